// Package hsm gives the provider's signing key as a crypto.Signer backed by
// a PKCS#11 token: a hardware security module, as RFC 6109 §5.1 recommends,
// or SoftHSM for tests. The private key never leaves the token; only
// digests go in and signatures come out.
//
// The token is selected by its label (never by slot number: SoftHSM and
// many HSMs renumber slots), the key pair by its CKA_LABEL and/or CKA_ID.
// RSA (PKCS#1 v1.5) and ECDSA keys are supported, which is what package
// smime signs with.
//
// Concurrency: a *Key may be used from any number of goroutines at once
// (pecmilter signs from one goroutine per milter connection). The
// underlying crypto11 Context keeps a pool of PKCS#11 sessions, all logged
// in through one persistent session, and every Sign borrows a session for
// the duration of one C_SignInit/C_Sign pair, so concurrent signatures
// never share a session. Close must not race with Sign: call it once, at
// shutdown, after the last signature.
//
// Keys opened on the same token share its login: PKCS#11 logs in once per
// token per process, and the token does not re-check the PIN of a second
// login while the first is active, so Open compares the PIN with the one
// already accepted instead. crypto11 keeps the PIN in its configuration
// for the life of the Key; it never appears in errors or String.
//
// cgo is required (the vendor library is loaded with dlopen); a binary
// built with CGO_ENABLED=0 gets an Open that fails with a clear error.
package hsm

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Config says where the key is.
type Config struct {
	Module     string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	TokenLabel string // CKA_LABEL of the token (softhsm2-util --show-slots: "Label")
	Pin        string // user PIN
	KeyLabel   string // CKA_LABEL of the key pair; at least one of KeyLabel and KeyID
	KeyID      []byte // CKA_ID of the key pair (softhsm2-util --id 01 is []byte{1})
}

// ParseID reads a CKA_ID written in hex ("01", "0a1b", "0x01"), the form
// softhsm2-util --id and pkcs11-tool --id take.
func ParseID(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("key id %q: want hex digits, e.g. 01: %v", s, err)
	}
	return b, nil
}
