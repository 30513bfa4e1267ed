//go:build cgo

package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// Key is a private key held in a PKCS#11 token. It implements
// crypto.Signer and is safe for concurrent use (see the package comment).
type Key struct {
	ctx    *crypto11.Context
	signer crypto11.Signer
	pub    crypto.PublicKey
	desc   string
	login  string // key of loggedIn

	closeOnce sync.Once
	closeErr  error
}

// openMu serialises Open and Close: crypto11 initialises a module once per
// process and the token listing used in error messages must not
// initialise or finalise the module while crypto11 does. It also guards
// loggedIn.
var openMu sync.Mutex

// loggedIn counts the open Keys per module and token, with the digest of
// the PIN that logged in. PKCS#11 keeps one login state per token per
// process: while a Key is open, C_Login answers
// CKR_USER_ALREADY_LOGGED_IN without looking at the PIN (crypto11 accepts
// that answer), so a second Open compares its PIN with the one the token
// already accepted instead.
var loggedIn = map[string]*login{}

type login struct {
	pin [32]byte
	n   int
}

func loginKey(cfg Config) string { return cfg.Module + "\x00" + cfg.TokenLabel }

// Open logs into the token and finds the key pair. The returned Key holds
// a PKCS#11 session pool open until Close.
func Open(cfg Config) (*Key, error) {
	openMu.Lock()
	defer openMu.Unlock()

	switch {
	case cfg.Module == "":
		return nil, errors.New("hsm: no PKCS#11 module given (the path of the vendor's library, e.g. /usr/lib/softhsm/libsofthsm2.so)")
	case cfg.TokenLabel == "":
		return nil, errors.New("hsm: no token label given (the token's label as listed by the vendor's tool, e.g. softhsm2-util --show-slots)")
	case cfg.KeyLabel == "" && len(cfg.KeyID) == 0:
		return nil, errors.New("hsm: no key label or key id given (the CKA_LABEL or CKA_ID of the signing key pair in the token)")
	}
	if st, err := os.Stat(cfg.Module); err != nil {
		return nil, fmt.Errorf("hsm: PKCS#11 module %s: %v (check the path of the vendor's library)", cfg.Module, err)
	} else if st.IsDir() {
		return nil, fmt.Errorf("hsm: PKCS#11 module %s is a directory, not a library", cfg.Module)
	}

	lk := loginKey(cfg)
	pin := sha256.Sum256([]byte(cfg.Pin))
	if l := loggedIn[lk]; l != nil && subtle.ConstantTimeCompare(l.pin[:], pin[:]) != 1 {
		return nil, fmt.Errorf("hsm: token %q rejected the PIN (check the user PIN): it differs from the PIN of the key already open on this token in this process", cfg.TokenLabel)
	}
	ctx, err := crypto11.Configure(&crypto11.Config{Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.Pin})
	if err != nil {
		return nil, configureError(cfg, err)
	}
	k, err := find(ctx, cfg)
	if err != nil {
		ctx.Close()
		return nil, err
	}
	if loggedIn[lk] == nil {
		loggedIn[lk] = &login{pin: pin}
	}
	loggedIn[lk].n++
	k.login = lk
	return k, nil
}

// find looks up exactly one key pair by label and/or id.
func find(ctx *crypto11.Context, cfg Config) (*Key, error) {
	var label []byte
	if cfg.KeyLabel != "" {
		label = []byte(cfg.KeyLabel)
	}
	what := describeKey(cfg)
	pairs, err := ctx.FindKeyPairs(cfg.KeyID, label)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: looking for %s: %v", cfg.TokenLabel, what, err)
	}
	switch len(pairs) {
	case 0:
		return nil, fmt.Errorf("hsm: token %q has no key pair with %s (check the key label/id; key pairs in the token: %s). The private and the public key object must share CKA_ID",
			cfg.TokenLabel, what, listPairs(ctx))
	case 1:
	default:
		return nil, fmt.Errorf("hsm: token %q has %d key pairs with %s: give both the key label and the key id to pick one", cfg.TokenLabel, len(pairs), what)
	}
	s := pairs[0]
	pub := s.Public()
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("hsm: token %q, %s: key type %T is not supported (use RSA or ECDSA)", cfg.TokenLabel, what, pub)
	}
	return &Key{ctx: ctx, signer: s, pub: pub, desc: fmt.Sprintf("PKCS#11 token %q, %s", cfg.TokenLabel, what)}, nil
}

func describeKey(cfg Config) string {
	var parts []string
	if cfg.KeyLabel != "" {
		parts = append(parts, fmt.Sprintf("key label %q", cfg.KeyLabel))
	}
	if len(cfg.KeyID) > 0 {
		parts = append(parts, "key id "+hex.EncodeToString(cfg.KeyID))
	}
	return strings.Join(parts, " and ")
}

// listPairs names the key pairs of the token, for error messages.
func listPairs(ctx *crypto11.Context) string {
	all, err := ctx.FindAllKeyPairs()
	if err != nil {
		return "(cannot list: " + err.Error() + ")"
	}
	if len(all) == 0 {
		return "none"
	}
	var out []string
	for _, s := range all {
		var label, id string
		if a, err := ctx.GetAttribute(s, crypto11.CkaLabel); err == nil && a != nil {
			label = string(a.Value)
		}
		if a, err := ctx.GetAttribute(s, crypto11.CkaId); err == nil && a != nil {
			id = hex.EncodeToString(a.Value)
		}
		out = append(out, fmt.Sprintf("label %q id %s", label, id))
	}
	return strings.Join(out, ", ")
}

// configureError turns crypto11.Configure's failure into advice.
func configureError(cfg Config, err error) error {
	var rv pkcs11.Error
	if errors.As(err, &rv) {
		switch rv {
		case pkcs11.CKR_PIN_INCORRECT:
			return fmt.Errorf("hsm: token %q rejected the PIN (check the user PIN; repeated failures may lock the token): %v", cfg.TokenLabel, err)
		case pkcs11.CKR_PIN_LOCKED:
			return fmt.Errorf("hsm: token %q: the user PIN is locked (too many wrong PINs; the security officer must reset it): %v", cfg.TokenLabel, err)
		case pkcs11.CKR_PIN_LEN_RANGE, pkcs11.CKR_PIN_INVALID:
			return fmt.Errorf("hsm: token %q: the PIN has the wrong length or characters (check the user PIN): %v", cfg.TokenLabel, err)
		case pkcs11.CKR_PIN_EXPIRED:
			return fmt.Errorf("hsm: token %q: the user PIN has expired (set a new one with the vendor's tool): %v", cfg.TokenLabel, err)
		case pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
			return fmt.Errorf("hsm: token %q has no user PIN yet (initialise it with the vendor's tool): %v", cfg.TokenLabel, err)
		}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return fmt.Errorf("hsm: no token labelled %q in module %s (check the token label; tokens present: %s)", cfg.TokenLabel, cfg.Module, tokenLabels(cfg.Module))
	case strings.Contains(msg, "failed to open module"), strings.Contains(msg, "failed to initialize module"):
		return fmt.Errorf("hsm: cannot load PKCS#11 module %s (check that it is the vendor's PKCS#11 library for this architecture and that its own configuration, e.g. SOFTHSM2_CONF, is readable): %v", cfg.Module, err)
	}
	return fmt.Errorf("hsm: opening token %q with module %s: %v", cfg.TokenLabel, cfg.Module, err)
}

// tokenLabels lists the labels of the tokens the module shows, for error
// messages; best effort. Called with openMu held, after crypto11 gave up
// its reference to the module (or while another Key holds it, in which
// case the module is already initialised and is left so).
func tokenLabels(module string) string {
	p := pkcs11.New(module)
	if p == nil {
		return "(cannot list)"
	}
	defer p.Destroy()
	owned := true
	if err := p.Initialize(); err != nil {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			return "(cannot list: " + err.Error() + ")"
		}
		owned = false
	}
	if owned {
		defer p.Finalize()
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return "(cannot list: " + err.Error() + ")"
	}
	var labels []string
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || ti.Label == "" {
			continue
		}
		labels = append(labels, fmt.Sprintf("%q", ti.Label))
	}
	if len(labels) == 0 {
		return "none initialised"
	}
	return strings.Join(labels, ", ")
}

// Public returns the public key (*rsa.PublicKey or *ecdsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign signs digest in the token: PKCS#1 v1.5 (or PSS when opts is
// *rsa.PSSOptions) for RSA, ASN.1 DER ECDSA-Sig-Value for ECDSA. rand is
// ignored: the token uses its own generator. Safe for concurrent use.
func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.signer.Sign(rand, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: sign: %w", k.desc, err)
	}
	return sig, nil
}

// String names the token and the key, never the PIN.
func (k *Key) String() string { return k.desc }

// Matches reports whether pub is the public half of k.
func (k *Key) Matches(pub crypto.PublicKey) bool {
	e, ok := k.pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(pub)
}

// Close logs out and closes the sessions. It waits for signatures in
// progress; the Key must not be used afterwards. Calling it again is a
// no-op.
func (k *Key) Close() error {
	k.closeOnce.Do(func() {
		openMu.Lock()
		defer openMu.Unlock()
		k.closeErr = k.ctx.Close()
		if l := loggedIn[k.login]; l != nil {
			if l.n--; l.n <= 0 {
				delete(loggedIn, k.login)
			}
		}
	})
	return k.closeErr
}

var _ crypto.Signer = (*Key)(nil)
