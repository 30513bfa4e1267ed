package point_test

import (
	"time"

	"github.com/pecgo/pec/store"
)

// history is a log the test answers for: each function nil answers
// "nothing recorded".
type history struct {
	count   func(sender string, typ store.EventType, since time.Time) (int, error)
	events  func(store.Query) ([]store.Event, error)
	tracked func(pecid string) ([]store.TrackingState, error)
}

func (h history) CountSenderEvents(sender string, typ store.EventType, since time.Time) (int, error) {
	if h.count == nil {
		return 0, nil
	}
	return h.count(sender, typ, since)
}

func (h history) Events(q store.Query) ([]store.Event, error) {
	if h.events == nil {
		return nil, nil
	}
	return h.events(q)
}

func (h history) Tracking(pecid string) ([]store.TrackingState, error) {
	if h.tracked == nil {
		return nil, nil
	}
	return h.tracked(pecid)
}
