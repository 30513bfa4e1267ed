//go:build !cgo

package hsm

import (
	"crypto"
	"errors"
	"io"
)

// errNoCgo: the PKCS#11 bridge (github.com/miekg/pkcs11) loads the vendor
// library with dlopen and needs cgo.
var errNoCgo = errors.New("hsm: this binary was built without cgo (CGO_ENABLED=0) and cannot load a PKCS#11 module; rebuild with cgo")

// Key is a private key held in a PKCS#11 token. Without cgo it cannot be
// opened.
type Key struct{}

// Open fails: PKCS#11 needs cgo.
func Open(cfg Config) (*Key, error) { return nil, errNoCgo }

// Public returns nil.
func (k *Key) Public() crypto.PublicKey { return nil }

// Sign fails.
func (k *Key) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, errNoCgo }

// Matches reports false.
func (k *Key) Matches(crypto.PublicKey) bool { return false }

// String names nothing.
func (k *Key) String() string { return "PKCS#11 (unavailable without cgo)" }

// Close does nothing.
func (k *Key) Close() error { return nil }
