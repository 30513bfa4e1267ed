package config

import (
	"fmt"
	"time"
)

// DefaultClockMaxError is the clock guard's default bound: providers keep
// their servers within 1 s of UTC (Intesi §4.2, Aruba §6.6).
const DefaultClockMaxError = "1s"

// ClockBound is [signing] clock_max_error as a duration; 0 when "off".
func (s Signing) ClockBound() (time.Duration, error) {
	v := s.ClockMaxError
	if v == "" {
		v = DefaultClockMaxError
	}
	if v == "off" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("[signing] clock_max_error %q: use a positive duration such as \"1s\" or \"500ms\", or \"off\" (test machines only: receipts may then carry a wrong time)", v)
	}
	return d, nil
}
