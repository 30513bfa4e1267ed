// Command pecctl is the PEC operator's tool.
//
//	pecctl verify [--ca FILE]... [--json] FILE...   verify PEC messages
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: pecctl COMMAND [ARGS]

commands:
  verify [--ca FILE]... [--json] FILE...   verify PEC messages (signature, chain, daticert)

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
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "pecctl: unknown command %q\n%s", args[0], usage)
	return 2
}
