package guard

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/pecgo/pec/point"
)

// Kernel reads the kernel's clock synchronisation state with adjtimex(2)
// in read-only mode (modes 0: nothing is changed, no privilege needed).
// chronyd and ntpd keep it up to date while they discipline the clock.
func Kernel() (point.ClockState, error) {
	var tx unix.Timex // Modes 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return point.ClockState{}, fmt.Errorf("adjtimex: %w", err)
	}
	return FromTimex(state, int64(tx.Status), int64(tx.Maxerror), int64(tx.Esterror)), nil
}

// FromTimex turns adjtimex's answer into a ClockState: the clock state it
// returns, the status bits and maxerror/esterror in microseconds.
// Synchronised means STA_UNSYNC clear and a state other than TIME_ERROR.
func FromTimex(state int, status, maxErrorUS, estErrorUS int64) point.ClockState {
	return point.ClockState{
		Synchronized: status&unix.STA_UNSYNC == 0 && state != unix.TIME_ERROR,
		MaxError:     micro(maxErrorUS),
		EstError:     micro(estErrorUS),
	}
}
