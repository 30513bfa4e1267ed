package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pecgo/pec/store"
)

// Who holds a claim. A sender writes its ClaimOwner next to every item it
// claims; a sender starting up gives back at once the claims of owners on
// its own host that are dead (releaseDead), so the receipts a crashed
// process held are sent within seconds of a restart, not when their lease
// ends.
//
// On Linux a process is identified by the boot it runs in, its PID
// namespace, its PID and its start time (/proc/PID/stat), which together
// never repeat: a reused PID, a previous run of this very program (even
// under the same PID, as in a container) and any process of an earlier
// boot are recognised as dead. Where /proc is not available, a PID that
// kill(pid, 0) reports missing, or our own PID under another instance id,
// is dead. Claims of other hosts, and of other PID namespaces on this
// host, are left to their lease: their processes cannot be checked from
// here. Hosts sharing a store must therefore have distinct host names.

// ThisProcess returns the claim owner of the running process: host name,
// PID, a new random instance id (the program's name and 8 random bytes)
// and, on Linux, the process identity described above.
func ThisProcess() store.ClaimOwner {
	host, _ := os.Hostname()
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	o := store.ClaimOwner{
		Host:     host,
		PID:      os.Getpid(),
		Instance: filepath.Base(os.Args[0]) + "-" + hex.EncodeToString(b[:]),
	}
	if p, ok := procOf(o.PID); ok {
		o.Proc = p.String()
	}
	return o
}

// procID identifies a process on a Linux host.
type procID struct {
	boot  string // /proc/sys/kernel/random/boot_id
	pidns string // readlink /proc/self/ns/pid, e.g. "pid:[4026531836]"
	start uint64 // start time after boot in clock ticks (/proc/PID/stat field 22)
}

func (p procID) String() string {
	return p.boot + " " + p.pidns + " " + strconv.FormatUint(p.start, 10)
}

func parseProcID(s string) (procID, bool) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return procID{}, false
	}
	n, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return procID{}, false
	}
	return procID{boot: f[0], pidns: f[1], start: n}, true
}

// procRoot is where the process table is read (a test may point it
// elsewhere).
var procRoot = "/proc"

// hostProc returns the boot id and PID namespace of this process.
func hostProc() (boot, pidns string, ok bool) {
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/kernel/random/boot_id"))
	if err != nil {
		return "", "", false
	}
	ns, err := os.Readlink(filepath.Join(procRoot, "self/ns/pid"))
	if err != nil {
		return "", "", false
	}
	return strings.TrimSpace(string(b)), ns, true
}

// startTime reads the start time of pid; exists is false when there is no
// such process.
func startTime(pid int) (start uint64, exists bool, err error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// so count fields after the last ')'; starttime is field 22 overall,
	// the 20th after comm.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("unexpected %s/%d/stat", procRoot, pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, false, fmt.Errorf("unexpected %s/%d/stat", procRoot, pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("unexpected %s/%d/stat: %w", procRoot, pid, err)
	}
	return start, true, nil
}

// procOf returns the identity of the live process pid.
func procOf(pid int) (procID, bool) {
	boot, ns, ok := hostProc()
	if !ok {
		return procID{}, false
	}
	start, exists, err := startTime(pid)
	if err != nil || !exists {
		return procID{}, false
	}
	return procID{boot: boot, pidns: ns, start: start}, true
}

// deadOwner tells whether the process that holds a claim is certainly
// gone, as seen by self, with the reason; false means alive or unknown.
func deadOwner(self, o store.ClaimOwner) (dead bool, why string) {
	if o.Host != self.Host || o.Instance == self.Instance || o.PID <= 0 {
		return false, ""
	}
	if p, ok := parseProcID(o.Proc); ok {
		boot, ns, ok := hostProc()
		switch {
		case !ok:
			// fall through to the PID checks below
		case p.boot != boot:
			return true, "the host rebooted since the claim"
		case p.pidns != ns:
			return false, "" // another PID namespace: its PIDs are not ours to check
		default:
			start, exists, err := startTime(o.PID)
			switch {
			case err != nil:
				return false, ""
			case !exists:
				return true, "no process with that PID"
			case start != p.start:
				return true, "the PID now belongs to another process"
			}
			return false, ""
		}
	}
	if o.PID == self.PID {
		return true, "our own PID under an earlier instance (a previous run)"
	}
	if err := syscall.Kill(o.PID, 0); errors.Is(err, syscall.ESRCH) {
		return true, "no process with that PID"
	}
	return false, ""
}
