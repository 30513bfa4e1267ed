package main

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/guard"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

const serviceUsage = `usage: pecctl service suspend --reason TEXT | resume | status [-config FILE]

The provider's service state (Aruba manual §9.7.7), kept in the store and
shared by every process and every node; running daemons apply a change
within seconds, without a restart. Each suspend and resume is a row of the
event log (point "service").
  suspend --reason TEXT   suspend the service: the access point issues only
                          non-acceptances ("servizio sospeso (TEXT)"), the
                          incoming point tempfails every message (no
                          take-charge: other providers keep retrying)
  resume                  resume the service
  status                  print the state
`

func cmdService(args []string, stdout, stderr io.Writer) int {
	const cmd = "service"
	fs, cfgPath := newFlags(cmd, serviceUsage, stderr)
	reason := fs.String("reason", "", "why the service is suspended (in the non-acceptances and the log)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) != 1 || (pos[0] != "suspend" && pos[0] != "resume" && pos[0] != "status") {
		return usageErr(stderr, cmd, serviceUsage, "want suspend, resume or status")
	}
	op := pos[0]
	why := strings.Join(strings.Fields(*reason), " ")
	switch {
	case op == "suspend" && why == "":
		return usageErr(stderr, cmd, serviceUsage, "suspend needs --reason TEXT (it goes into every non-acceptance and the log)")
	case op != "suspend" && *reason != "":
		return usageErr(stderr, cmd, serviceUsage, "--reason is for suspend only")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	cur, err := st.ServiceState()
	if err != nil {
		return fail(stderr, cmd, err)
	}
	loc := cfg.Location()
	switch op {
	case "status":
		fmt.Fprintln(stdout, describeService(cur, loc))
		return 0
	case "suspend":
		if cur.Suspended && cur.Reason == why {
			fmt.Fprintf(stdout, "already %s\n", describeService(cur, loc))
			return 0
		}
	case "resume":
		if !cur.Suspended {
			fmt.Fprintf(stdout, "not suspended: %s\n", describeService(cur, loc))
			return 0
		}
	}
	next, ev := serviceChange(cfg, op == "suspend", why, operator(), time.Now())
	if err := st.SetServiceState(next, ev); err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintln(stdout, describeService(next, loc))
	if next.Suspended {
		fmt.Fprintf(stdout, "the access point issues only non-acceptances (%q), the incoming point tempfails every message; running daemons apply it within %v; resume with: pecctl service resume\n",
			point.SuspendedReason+" ("+why+")", guard.ServiceTTL)
	} else {
		fmt.Fprintf(stdout, "running daemons take mail again within %v; other providers' retries arrive as their queues run (Postfix: postqueue -f at their end)\n", guard.ServiceTTL)
	}
	return 0
}

// serviceChange is the new state and its log row.
func serviceChange(cfg *config.Config, suspend bool, reason, by string, now time.Time) (store.ServiceState, store.Event) {
	now = now.Truncate(time.Second)
	st := store.ServiceState{Suspended: suspend, Reason: reason, Since: now, By: by}
	typ := store.TypeResumed
	if suspend {
		typ = store.TypeSuspended
	}
	return st, store.Event{Time: now, Point: store.AtService, Type: typ, Sender: by, Subject: reason, Provider: cfg.Provider.Name}
}

func describeService(st store.ServiceState, loc *time.Location) string {
	switch {
	case st.Suspended:
		return fmt.Sprintf("suspended since %s by %s: %s", localTime(st.Since, loc), st.By, st.Reason)
	case st.Since.IsZero():
		return "active"
	}
	return fmt.Sprintf("active since %s (resumed by %s)", localTime(st.Since, loc), st.By)
}

// operator names who ran the command, for the log: login@host.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	} else if v := os.Getenv("USER"); v != "" {
		name = v
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return name + "@" + host
}
