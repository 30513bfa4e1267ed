package main

import (
	"fmt"
	"io"

	"github.com/pecgo/pec/config"
)

const logUsage = `usage: pecctl log SUBCOMMAND [OPTIONS]

The PEC event log (RFC 6109 §2.3) in the store named by the configuration.

subcommands:
  verify   check the hash chain of the whole log
  search   list events by PEC id, Message-ID, sender, recipient, day or time range
  export   a signed extract of one mailbox's events over a day range, for its holder
  purge    delete events and virus items older than the retention period (archived days only)
  archive  write (or --verify) the signed daily archive of one day

Run "pecctl log SUBCOMMAND -h" for its options. Every subcommand takes
-config FILE (default ` + config.DefaultPath + `).
`

func cmdLog(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, logUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return logVerify(args[1:], stdout, stderr)
	case "search":
		return logSearch(args[1:], stdout, stderr)
	case "export":
		return logExport(args[1:], stdout, stderr)
	case "purge":
		return logPurge(args[1:], stdout, stderr)
	case "archive":
		return logArchive(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, logUsage)
		return 0
	}
	fmt.Fprintf(stderr, "pecctl log: unknown subcommand %q\n%s", args[0], logUsage)
	return 2
}
