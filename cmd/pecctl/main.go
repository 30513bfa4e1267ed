// Command pecctl is the PEC operator's tool.
//
//	pecctl verify [--ca FILE]... [--json] FILE...   verify PEC messages
//	pecctl log verify|search|export|purge|archive   the event log
//	pecctl index sync|show|domain D|cert SHA1       the providers' index
//	pecctl report --period YYYY-TN | --from DAY --to DAY [--json|--csv]   AgID quality indicators
//	pecctl store backup DIR | restore --verify FROM  backup and restore of the store
//	pecctl virus list|extract                       the virus store
//	pecctl config check                             the configuration, before starting the daemons
//	pecctl service suspend --reason T|resume|status the provider's service state (Aruba §9.7.7)
//	pecctl mailbox add|list|show|suspend|close|reopen  the mailbox registry
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: pecctl COMMAND [ARGS]

commands:
  verify [--ca FILE]... [--json] FILE...   verify PEC messages (signature, chain, daticert)
  log verify                               check the event log's hash chain
  log search [--pecid ID] [--msgid ID] [--sender A] [--rcpt A] [--day DAY | --from T --to T] [--json]
                                           list events
  log export --mailbox ADDR (--date DAY | --from DAY --to DAY) [--pecid ID] [--msgid ID]
             [--counterpart ADDR] [--subject TEXT] [--dir D] [-o FILE]
                                           signed extract of a mailbox's events, from the store
                                           and the archives, with copies of our receipts
  log purge [--before T] [--dir D]         delete what is older than the retention period,
                                           only days whose archive verifies
  log archive --day DAY [--dir D] [--tsa URL] | --verify --day DAY
                                           signed (and time-stamped) daily archive
  index sync|show|domain DOMAIN|cert SHA1  the providers' index
  index hash [--ldif] CERT.pem             providerCertificateHash (hex SHA-1 of the DER) of a certificate
  config check                             load the configuration, the signing key and certificate,
                                           the trusted roots and the index source; ask clamd and Dovecot
  report (--period YYYY-TN | --from DAY --to DAY) [--json | --csv]
                                           AgID quality indicators (T1 Jan-Apr, T2 May-Aug, T3 Sep-Dec)
  store backup [--keep N] DIR              online, consistent copy of the store
  store restore [--verify] [--force] FROM  put a backup back; --verify checks the chain
                                           against the last daily archive
  virus list [--from DAY --to DAY] [--pecid ID] [--json]
  virus extract (--id N | --pecid ID | --from DAY --to DAY) -o FILE [--raw]
                                           the virus store, for an authorised request
  outbox list|retry                        receipts waiting to be sent; send them now
  service suspend --reason TEXT|resume|status
                                           suspend the service (only non-acceptances at submission,
                                           tempfail at the incoming point), resume it, show the state
  mailbox add|list|show|suspend|close|reopen|passwd|set|sync
                                           the mailbox registry and Dovecot's users file

log, index, report, outbox, store, virus, service, mailbox and config read the configuration (-config FILE, default
/etc/pec/pec.toml). DAY is YYYY-MM-DD in the provider's time zone, T is
RFC 3339.

Run "pecctl COMMAND -h" for a command's options.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "verify":
		return cmdVerify(args[1:], stdout, stderr)
	case "log":
		return cmdLog(args[1:], stdout, stderr)
	case "index":
		return cmdIndex(args[1:], stdout, stderr)
	case "outbox":
		return cmdOutbox(args[1:], stdout, stderr)
	case "store":
		return cmdStore(args[1:], stdout, stderr)
	case "virus":
		return cmdVirus(args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "service":
		return cmdService(args[1:], stdout, stderr)
	case "mailbox":
		return cmdMailbox(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "pecctl: unknown command %q\n%s", args[0], usage)
	return 2
}
