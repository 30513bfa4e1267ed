package main

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

// exportAttachments returns the copies attached to a verified extract's
// content, by file name.
func exportAttachments(t *testing.T, content []byte) map[string][]byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	mr := multipart.NewReader(m.Body, params["boundary"])
	out := map[string][]byte{}
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "application/octet-stream" {
			continue
		}
		_, dp, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		body, _ := io.ReadAll(p)
		dec, err := decodeB64(body)
		if err != nil {
			t.Fatal(err)
		}
		out[dp["filename"]] = dec
	}
	return out
}

// TestLogExportRange: a holder's extract over several days comes from the
// archives for the rows purged from the store and from the store for the
// rest, with the filters applied and the copies of our receipts attached.
func TestLogExportRange(t *testing.T) {
	openssl := needOpenSSL(t)
	forBackends(t, func(t *testing.T, bf *backendFixture) {
		f := bf.fixture
		// an acceptance as the access point writes it: the receipt's id in
		// the row, its Message-ID field (in angle brackets) in the outbox
		st := bf.open(t)
		if err := st.Commit(store.Txn{Events: []store.Event{{Time: utc("2024-03-03T10:00:00Z"), Point: "access", Type: "accettazione",
			PECID: "opec-107.20240303@pec.example.test", MsgID: "<m107@pec.example.test>", Sender: mario, Recipients: []string{giulia},
			Subject: "Verbale", Related: []string{"acc-107@pec.example.test"}, Provider: provName}},
			Outbox: []store.Outgoing{{MailFrom: "posta-certificata@" + provDom, Rcpts: []string{mario}, Data: []byte("Subject: ACCETTAZIONE: Verbale\r\n\r\nx\r\n"),
				MessageID: "<acc-107@pec.example.test>", Kind: "accettazione"}}}); err != nil {
			t.Fatal(err)
		}
		last, err := st.Events(store.Query{PECID: "opec-107.20240303@pec.example.test"})
		if err != nil || len(last) != 1 {
			t.Fatalf("%v %v", last, err)
		}
		f.all = append(f.all, last[0])
		for _, day := range []string{"2021-01-10", "2021-01-11", "2024-03-01", "2024-03-02"} {
			if code, out, errOut := f.run("log", "archive", "--day", day); code != 0 {
				t.Fatalf("archive %s: %d %s %s", day, code, out, errOut)
			}
		}
		cut := utc("2024-03-02T12:00:00Z")
		if code, out, errOut := f.run("log", "purge", "--before", cut.Format(time.RFC3339), "--force"); code != 0 {
			t.Fatalf("purge: %d %s %s", code, out, errOut)
		}
		export := func(args ...string) (exportJSON, string, map[string][]byte) {
			t.Helper()
			out := filepath.Join(t.TempDir(), "estratto.eml")
			code, _, errOut := f.run(append([]string{"log", "export", "--mailbox", mario, "-o", out}, args...)...)
			if code != 0 {
				t.Fatalf("export %v: exit %d: %s", args, code, errOut)
			}
			cmd := exec.Command(openssl, "smime", "-verify", "-in", out, "-CAfile", f.root, "-purpose", "any")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("openssl smime -verify: %v: %s", err, stderr.String())
			}
			text, js := exportParts(t, stdout.Bytes())
			return js, text, exportAttachments(t, stdout.Bytes())
		}
		rowIDs := func(js exportJSON) []int64 {
			var ids []int64
			for _, r := range js.Rows {
				ids = append(ids, r.ID)
			}
			return ids
		}
		inRange := func(e store.Event) bool {
			d := romeDay(e.Time)
			return d >= "2024-03-01" && d <= "2024-03-03" && (e.Sender == mario || hasAddr(e.Recipients, mario))
		}
		js, text, att := export("--from", "2024-03-01", "--to", "2024-03-03")
		want := f.ids(inRange)
		if got := rowIDs(js); !reflect.DeepEqual(got, want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		if purged := f.ids(func(e store.Event) bool { return inRange(e) && e.Time.Before(cut) }); len(purged) < 3 {
			t.Fatalf("only %d of the rows were purged: the test proves nothing", len(purged))
		}
		if !reflect.DeepEqual(js.ArchivedDays, []string{"2024-03-01", "2024-03-02"}) || js.FromDay != "2024-03-01" || js.ToDay != "2024-03-03" || js.Day != "" {
			t.Errorf("header %+v", js)
		}
		if !strings.Contains(text, "Periodo: 01/03/2024 - 03/03/2024") || !strings.Contains(text, "archivi giornalieri firmati") {
			t.Errorf("summary:\n%s", text)
		}
		// the acceptance receipts of opec-102 (sent) and opec-107 (pending),
		// still in the outbox
		if len(js.Copies) != 2 || js.Copies[0].MessageID != "<acc-102@pec.example.test>" || js.Copies[0].Kind != "accettazione" ||
			js.Copies[0].Sent.IsZero() || js.Copies[1].MessageID != "<acc-107@pec.example.test>" || !js.Copies[1].Sent.IsZero() ||
			!strings.HasPrefix(string(att[js.Copies[0].File]), "Subject: ACCETTAZIONE") ||
			!strings.HasPrefix(string(att[js.Copies[1].File]), "Subject: ACCETTAZIONE: Verbale") {
			t.Errorf("copies %+v, attachments %v", js.Copies, len(att))
		}

		// filters
		for _, c := range []struct {
			args []string
			keep func(e store.Event) bool
		}{
			{[]string{"--counterpart", "Anna.Verdi@pec.other.test"}, func(e store.Event) bool { return e.Sender == anna || hasAddr(e.Recipients, anna) }},
			{[]string{"--subject", "CONTRATTO"}, func(e store.Event) bool { return strings.Contains(e.Subject, "Contratto") }},
			{[]string{"--pecid", "opec-101.20240301@pec.example.test"}, func(e store.Event) bool { return e.PECID == "opec-101.20240301@pec.example.test" }},
			{[]string{"--msgid", "m102@pec.example.test"}, func(e store.Event) bool { return e.MsgID == "<m102@pec.example.test>" }},
		} {
			js, text, _ := export(append([]string{"--from", "2024-03-01", "--to", "2024-03-03"}, c.args...)...)
			want := f.ids(func(e store.Event) bool { return inRange(e) && c.keep(e) })
			if got := rowIDs(js); !reflect.DeepEqual(got, want) || len(want) == 0 {
				t.Errorf("%v: rows %v, want %v", c.args, got, want)
			}
			if !strings.Contains(text, "secondo i filtri indicati") {
				t.Errorf("%v: the summary does not say the rows are filtered", c.args)
			}
		}

		// a day purged and never archived is named
		code, _, errOut := f.run("log", "export", "--mailbox", mario, "--from", "2024-02-28", "--to", "2024-03-01", "-o", filepath.Join(t.TempDir(), "x.eml"))
		if code != 0 || !strings.Contains(errOut, "day 2024-02-28 is neither in the store") || strings.Contains(errOut, "day 2024-03-01 is neither") {
			t.Errorf("export over a lost day: exit %d %q", code, errOut)
		}
		// an archive that does not verify is not used
		data := filepath.Join(f.dir, "archive", "pec-log-2024-03-01.jsonl.gz")
		raw, _ := os.ReadFile(data)
		raw[len(raw)/2] ^= 0xff
		os.WriteFile(data, raw, 0o640)
		code, _, errOut = f.run("log", "export", "--mailbox", mario, "--from", "2024-03-01", "--to", "2024-03-02")
		if code != 1 || !strings.Contains(errOut, "archive of 2024-03-01 does not verify") {
			t.Errorf("export over a damaged archive: exit %d %q", code, errOut)
		}
		for _, args := range [][]string{
			{"log", "export", "--mailbox", mario, "--date", "2024-03-01", "--from", "2024-03-01", "--to", "2024-03-02"},
			{"log", "export", "--mailbox", mario, "--from", "2024-03-01"},
			{"log", "export", "--mailbox", mario, "--date", "2024-03-01", "--counterpart", "anna"},
		} {
			if code, _, _ := f.run(args...); code != 2 {
				t.Errorf("%v: exit %d, want 2", args, code)
			}
		}
	})
}
