package lmtp_test

import "github.com/pecgo/pec/internal/deliverytest"

// the delivery point's bench (internal/deliverytest)
var at = deliverytest.At

const (
	mario   = deliverytest.Mario
	luigi   = deliverytest.Luigi
	carla   = deliverytest.Carla
	anna    = deliverytest.Anna
	ugo     = deliverytest.Ugo
	intruso = deliverytest.Intruso
)
