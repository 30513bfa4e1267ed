package lmtp

import "github.com/emersion/go-smtp"

// errClock tempfails a message while the clock is out of bound: a
// delivery receipt carries legal time (RFC 6109 §4.1), and providers stop
// signing when their clock is off by more than the bound (Intesi §4.2,
// Aruba §6.6). Postfix keeps the message and retries.
var errClock = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
	Message: "PEC delivery point: server clock not synchronised, no receipt can be signed now; try again later"}

// clockRefusal is errClock, logged with the reason, when the clock guard
// forbids signing; nil otherwise.
func (s *Server) clockRefusal() error {
	if s.ClockProblem == nil {
		return nil
	}
	p := s.ClockProblem()
	if p == "" {
		return nil
	}
	s.log().Error("not signing: clock out of bound, tempfailing: Postfix retries", "problem", p)
	return errClock
}
