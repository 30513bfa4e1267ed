package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/pecgo/pec/store/sqlite"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/logarchive"
)

// errUsage marks a usage error (exit status 2); the usage text has been
// printed already.
var errUsage = errors.New("usage")

// newFlags makes a flag set printing usage to stderr, with -config.
func newFlags(name, usage string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfg := fs.String("config", config.DefaultPath, "configuration file")
	return fs, cfg
}

// parseArgs parses flags anywhere among the arguments ("index domain D
// -config F" as well as "index -config F domain D") and returns the
// positional arguments. -h prints the usage and returns flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// exitParse maps a parse error to the exit status: 0 for -h, 2 otherwise.
func exitParse(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// usageErr prints a usage problem and the usage text; exit status 2.
func usageErr(stderr io.Writer, cmd, usage, format string, args ...any) int {
	fmt.Fprintf(stderr, "pecctl %s: %s\n%s", cmd, fmt.Sprintf(format, args...), usage)
	return 2
}

// fail prints a runtime error; exit status 1.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "pecctl %s: %v\n", cmd, err)
	return 1
}

func loadConfig(path string) (*config.Config, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("configuration file %s not found: pass -config FILE", path)
		}
		return nil, err
	}
	return config.Load(path)
}

// openStore opens the configured store, refusing to create a new one: a
// wrong path must not yield an empty log that "verifies".
func openStore(cfg *config.Config) (*sqlite.Store, error) {
	p := cfg.Store.Path
	if p == "" {
		return nil, errors.New("[store] path is not set in the configuration")
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store %s does not exist: check [store] path in the configuration", p)
		}
		return nil, fmt.Errorf("store %s: %w", p, err)
	}
	return sqlite.Open(p)
}

// parseDay returns the bounds of day (YYYY-MM-DD) in loc.
func parseDay(day string, loc *time.Location) (from, to time.Time, err error) {
	return logarchive.DayRange(day, loc)
}

// parseDayRange returns [start of from, start of the day after to) in loc.
func parseDayRange(from, to string, loc *time.Location) (time.Time, time.Time, error) {
	f, _, err := parseDay(from, loc)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--from: %v", err)
	}
	_, t, err := parseDay(to, loc)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--to: %v", err)
	}
	if !t.After(f) {
		return time.Time{}, time.Time{}, fmt.Errorf("--to %s is before --from %s", to, from)
	}
	return f, t, nil
}

// localTime formats an instant in the provider zone for text output.
func localTime(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("2006-01-02 15:04:05 -0700")
}

// word quotes a value for key=value text output when it is empty or holds
// spaces, quotes or control characters, so that one event stays one line.
func word(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if unicode.IsSpace(r) || r == '"' || r == '\\' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func list(l []string) string { return word(strings.Join(l, ",")) }
