//go:build !linux

package guard

import (
	"errors"

	"github.com/pecgo/pec/point"
)

// Kernel is not available off Linux: the clock guard fails closed there
// unless it is turned off.
func Kernel() (point.ClockState, error) {
	return point.ClockState{}, errors.New("the kernel's clock synchronisation state is read with adjtimex(2), Linux only")
}
