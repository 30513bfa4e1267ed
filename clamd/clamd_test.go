package clamd

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testenv"
)

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		reply   string
		want    Result
		wantErr string // substring; "" = no error
		size    bool   // errors.Is ErrSizeLimit
	}{
		{reply: "stream: OK\x00", want: Result{}},
		{reply: "stream: OK", want: Result{}},
		{reply: "stream: OK\n", want: Result{}},
		{reply: "stream: Test.EICAR.NDB.UNOFFICIAL FOUND\x00", want: Result{Infected: true, Signature: "Test.EICAR.NDB.UNOFFICIAL"}},
		{reply: "stream: Win.Test.EICAR_HDB-1 FOUND", want: Result{Infected: true, Signature: "Win.Test.EICAR_HDB-1"}},
		{reply: "INSTREAM size limit exceeded. ERROR\x00", size: true, wantErr: "StreamMaxLength"},
		{reply: "stream: Can't allocate memory ERROR", wantErr: "clamd reported an error"},
		{reply: "stream:  FOUND", wantErr: "malformed FOUND"},
		{reply: "stream: FOUND", wantErr: "unexpected reply"},
		{reply: "", wantErr: "unexpected reply"},
		{reply: "PONG", wantErr: "unexpected reply"},
		{reply: "stream: OKAY", wantErr: "unexpected reply"},
		{reply: "UNKNOWN COMMAND", wantErr: "unexpected reply"},
	} {
		got, err := parseReply(tc.reply)
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("parseReply(%q) = %+v, %v; want %+v", tc.reply, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, ErrSizeLimit) != tc.size || got != (Result{}) {
			t.Errorf("parseReply(%q) = %+v, %v; want error containing %q (size limit: %v)", tc.reply, got, err, tc.wantErr, tc.size)
		}
	}
}

// FuzzParseReply: never panics; a verdict is either clean with no name or
// infected with a non-empty single-line name; errors carry no verdict.
func FuzzParseReply(f *testing.F) {
	f.Add("stream: OK\x00")
	f.Add("stream: Eicar-Signature FOUND\x00")
	f.Add("INSTREAM size limit exceeded. ERROR")
	f.Fuzz(func(t *testing.T, reply string) {
		res, err := parseReply(reply)
		if err != nil {
			if res != (Result{}) {
				t.Fatalf("error %v with a verdict %+v", err, res)
			}
			return
		}
		if res.Infected == (res.Signature == "") {
			t.Fatalf("inconsistent verdict %+v for %q", res, reply)
		}
		if strings.ContainsAny(res.Signature, "\x00\r\n") || strings.TrimSpace(res.Signature) != res.Signature {
			t.Fatalf("bad signature %q for %q", res.Signature, reply)
		}
	})
}

// eicarMail is an RFC 5322 message with the EICAR file as a base64
// attachment: clamd decodes MIME itself, so the raw message can be streamed.
func eicarMail() []byte {
	b64 := base64.StdEncoding.EncodeToString(testenv.EICAR())
	return []byte("From: <mittente@example.test>\r\n" +
		"To: <mario.rossi@pec.example.test>\r\n" +
		"Subject: attachment\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
		"\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nciao, in allegato il file\r\n" +
		"--b1\r\nContent-Type: application/octet-stream; name=\"test.com\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"test.com\"\r\n\r\n" +
		b64 + "\r\n--b1--\r\n")
}

func clients(c *testenv.Clamd) []*Client {
	return []*Client{
		{Network: "tcp", Addr: c.Addr, Timeout: 10 * time.Second},
		{Network: "unix", Addr: c.Socket, Timeout: 10 * time.Second},
	}
}

// TestScan: against a real clamd on TCP and unix socket: PING, VERSION,
// clean data (also multi-chunk), EICAR raw and inside a MIME attachment.
func TestScan(t *testing.T) {
	t.Parallel()
	c := testenv.StartClamd(t)
	ctx := context.Background()
	big := bytes.Repeat([]byte("clean line of a fairly long message body\r\n"), 50_000) // ~2 MB
	for _, cl := range clients(c) {
		t.Run(cl.Network, func(t *testing.T) {
			if err := cl.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if v, err := cl.Version(ctx); err != nil || !strings.HasPrefix(v, "ClamAV ") {
				t.Errorf("Version = %q, %v", v, err)
			}
			for name, data := range map[string][]byte{
				"text":  []byte("Buongiorno, nessun virus qui.\r\n"),
				"empty": nil,
				"big":   big,
			} {
				res, err := cl.Scan(ctx, bytes.NewReader(data))
				if err != nil || res.Infected {
					t.Errorf("clean %s: %+v, %v", name, res, err)
				}
			}
			small := *cl
			small.ChunkSize = 1000 // many chunks, EICAR split across two
			for name, data := range map[string][]byte{
				"raw":  testenv.EICAR(),
				"mime": eicarMail(),
			} {
				for _, x := range []*Client{cl, &small} {
					res, err := x.Scan(ctx, bytes.NewReader(data))
					if err != nil || !res.Infected || !strings.HasPrefix(res.Signature, "Test.EICAR.") {
						t.Errorf("%s (chunk %d): %+v, %v; want infected Test.EICAR.*", name, x.ChunkSize, res, err)
					}
				}
			}
			// Multi-chunk clean stream.
			if res, err := small.Scan(ctx, bytes.NewReader(big[:300_000])); err != nil || res.Infected {
				t.Errorf("clean, 1000-byte chunks: %+v, %v", res, err)
			}
		})
	}
}

// TestScanSizeLimit: a stream over StreamMaxLength gives ErrSizeLimit (clamd
// answers and closes mid-stream), never a clean verdict; under it is fine.
func TestScanSizeLimit(t *testing.T) {
	t.Parallel()
	c := testenv.StartClamdWith(t, testenv.ClamdOptions{StreamMaxLength: "100K"})
	ctx := context.Background()
	for _, cl := range clients(c) {
		for _, chunk := range []int{0, 4096} {
			x := *cl
			x.ChunkSize = chunk
			_, err := x.Scan(ctx, bytes.NewReader(make([]byte, 3<<20)))
			if !errors.Is(err, ErrSizeLimit) {
				t.Errorf("%s chunk %d: 3 MiB over 100K: %v; want ErrSizeLimit", cl.Network, chunk, err)
			}
		}
		if res, err := cl.Scan(ctx, bytes.NewReader(make([]byte, 50_000))); err != nil || res.Infected {
			t.Errorf("%s: 50 KB under 100K: %+v, %v", cl.Network, res, err)
		}
	}
}

// TestClamdDown: with clamd stopped every call fails with an actionable
// error (callers tempfail), OnError sees each one; after Start it works again.
func TestClamdDown(t *testing.T) {
	t.Parallel()
	c := testenv.StartClamd(t)
	ctx := context.Background()
	c.Stop()
	var failures atomic.Int32
	for _, cl := range clients(c) {
		cl.OnError = func(error) { failures.Add(1) }
		_, err := cl.Scan(ctx, bytes.NewReader(testenv.EICAR()))
		if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "is clamd running") {
			t.Errorf("%s: Scan with clamd down: %v", cl.Network, err)
		}
		if err := cl.Ping(ctx); err == nil {
			t.Errorf("%s: Ping with clamd down succeeded", cl.Network)
		}
		if _, err := cl.Version(ctx); err == nil {
			t.Errorf("%s: Version with clamd down succeeded", cl.Network)
		}
	}
	if n := failures.Load(); n != 6 {
		t.Errorf("OnError called %d times, want 6", n)
	}
	c.Start(t)
	for _, cl := range clients(c) {
		if res, err := cl.Scan(ctx, bytes.NewReader(testenv.EICAR())); err != nil || !res.Infected {
			t.Errorf("%s after restart: %+v, %v", cl.Network, res, err)
		}
	}
}

// silentServer accepts connections, reads everything and never answers.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				io.Copy(io.Discard, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTimeout: a server that never answers trips c.Timeout, a shorter ctx
// deadline and ctx cancellation, each promptly and with a clear error.
func TestTimeout(t *testing.T) {
	t.Parallel()
	addr := silentServer(t)
	check := func(name string, ctx context.Context, cl *Client, want string, max time.Duration) {
		t.Helper()
		start := time.Now()
		_, err := cl.Scan(ctx, strings.NewReader("hello"))
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want error containing %q", name, err, want)
		}
		if took > max {
			t.Errorf("%s: took %v, want <= %v", name, took, max)
		}
	}
	check("Client.Timeout", context.Background(), &Client{Addr: addr, Timeout: 200 * time.Millisecond}, "timed out", 2*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	check("ctx deadline", ctx, &Client{Addr: addr, Timeout: time.Minute}, "timed out", 2*time.Second)

	ctx, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel2)
	check("ctx cancel", ctx, &Client{Addr: addr, Timeout: time.Minute}, "cancel", 2*time.Second)

	// Ping too (read side).
	start := time.Now()
	if err := (&Client{Addr: addr, Timeout: 200 * time.Millisecond}).Ping(context.Background()); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("Ping against a silent server: %v after %v", err, time.Since(start))
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		n := min(r.n, len(p))
		r.n -= n
		return n, nil
	}
	return 0, fmt.Errorf("disk on fire")
}

// TestReaderError: a failing input is an error, never a verdict.
func TestReaderError(t *testing.T) {
	t.Parallel()
	addr := silentServer(t)
	cl := &Client{Addr: addr, Timeout: 5 * time.Second}
	res, err := cl.Scan(context.Background(), &failingReader{n: 100_000})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || res != (Result{}) {
		t.Errorf("Scan with failing reader: %+v, %v", res, err)
	}
}

// endReader notes when the scanner has read its last byte: everything
// after that is clamd's own work (its INSTREAM spools the stream and
// scans it once the terminating chunk arrives).
type endReader struct {
	r   io.Reader
	end time.Time
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF && e.end.IsZero() {
		e.end = time.Now()
	}
	return n, err
}

// BenchmarkScan100KB and BenchmarkScan1MB: a message with a text part and
// a base64 attachment of random octets, different in every iteration
// (clamd keeps the verdicts of content it has seen: a repeated message
// measures its cache, about a third of a real scan), over TCP and over
// the unix socket (also with clamd's temporary files on a tmpfs), split
// into the time to send the stream and the time from its end to the
// verdict. Streaming the body to clamd while the
// milter receives it could only hide the first part.
func BenchmarkScan100KB(b *testing.B) { benchScan(b, 100<<10) }
func BenchmarkScan1MB(b *testing.B)   { benchScan(b, 1<<20) }

func benchScan(b *testing.B, size int) {
	c := testenv.StartClamd(b)
	rng := rand.New(rand.NewSource(1))
	message := func() []byte {
		data := make([]byte, size*3/4) // random octets, like a compressed or encrypted attachment
		rng.Read(data)
		msg := []byte("From: <a@example.test>\r\nTo: <b@example.test>\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
			"In allegato il documento.\r\n--b1\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(data)
		for len(enc) > 76 {
			msg = append(msg, enc[:76]+"\r\n"...)
			enc = enc[76:]
		}
		return append(msg, enc+"\r\n--b1--\r\n"...)
	}
	// the same clamd with its temporary files (the spooled stream, the
	// decoded parts) on a tmpfs (/dev/shm) instead of the disk
	shm, err := os.MkdirTemp("/dev/shm", "pec-clamd-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(shm) })
	os.Chmod(shm, 0o777)
	ct := testenv.StartClamdWith(b, testenv.ClamdOptions{Extra: []string{"TemporaryDirectory " + shm}})
	for _, v := range []struct {
		name string
		cl   *Client
	}{
		{"tcp", &Client{Network: "tcp", Addr: c.Addr, Timeout: 10 * time.Second}},
		{"unix", &Client{Network: "unix", Addr: c.Socket, Timeout: 10 * time.Second}},
		{"unix-tmpfs", &Client{Network: "unix", Addr: ct.Socket, Timeout: 10 * time.Second}},
	} {
		cl := v.cl
		b.Run(v.name, func(b *testing.B) {
			var send, verdict time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				msg := message()
				b.StartTimer()
				r := &endReader{r: bytes.NewReader(msg)}
				start := time.Now()
				if res, err := cl.Scan(context.Background(), r); err != nil || res.Infected {
					b.Fatalf("%+v %v", res, err)
				}
				send += r.end.Sub(start)
				verdict += time.Since(r.end)
			}
			b.ReportMetric(float64(send.Microseconds())/float64(b.N)/1000, "send-ms/op")
			b.ReportMetric(float64(verdict.Microseconds())/float64(b.N)/1000, "verdict-ms/op")
		})
	}
}
