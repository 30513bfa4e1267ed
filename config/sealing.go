package config

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/pecgo/pec/smime"
)

// Log is the [log] section: the sealing key that signs the daily log
// archives (pecctl log archive) and the extracts for mailbox holders
// (pecctl log export). Aruba §8.1: the PEC signing key signs only PEC
// messages, so the log has a key and certificate of its own; while none
// is configured the PEC key is used, with a warning. A file or, as in
// [signing], a PKCS#11 token.
type Log struct {
	Certificate string `toml:"certificate"` // PEM: the sealing certificate, then intermediates
	Key         string `toml:"key"`         // PEM private key; "" with pkcs11_module
	// TrustedRoots are the roots of the sealing certificate's CA, added
	// to [signing] trusted_roots when archives are verified.
	TrustedRoots   []string `toml:"trusted_roots"`
	PKCS11Module   string   `toml:"pkcs11_module"`
	PKCS11Token    string   `toml:"pkcs11_token"`
	PKCS11Pin      string   `toml:"pkcs11_pin"`
	PKCS11PinFile  string   `toml:"pkcs11_pin_file"`
	PKCS11KeyLabel string   `toml:"pkcs11_key_label"`
	PKCS11KeyID    string   `toml:"pkcs11_key_id"`
}

// Configured reports whether a sealing key is set.
func (l *Log) Configured() bool {
	return l.Certificate != "" || l.Key != "" || l.PKCS11Module != ""
}

// asSigning is the section as a key section, for the PKCS#11 code.
func (l *Log) asSigning() *Signing {
	return &Signing{Certificate: l.Certificate, Key: l.Key, PKCS11Module: l.PKCS11Module, PKCS11Token: l.PKCS11Token,
		PKCS11Pin: l.PKCS11Pin, PKCS11PinFile: l.PKCS11PinFile, PKCS11KeyLabel: l.PKCS11KeyLabel, PKCS11KeyID: l.PKCS11KeyID}
}

func (l *Log) check() []string {
	if !l.Configured() {
		return l.asSigning().checkPKCS11In("[log]") // stray pkcs11_* settings
	}
	var errs []string
	if l.Certificate == "" {
		errs = append(errs, "[log] certificate is required with key or pkcs11_module (the sealing certificate, PEM)")
	}
	if l.Key == "" && l.PKCS11Module == "" {
		errs = append(errs, "[log] key or pkcs11_module is required with certificate (the sealing key: a PEM file or a PKCS#11 token)")
	}
	return append(errs, l.asSigning().checkPKCS11In("[log]")...)
}

// ErrSealingFallback is wrapped in the warning SealingSigner returns
// when [log] has no key and the PEC key seals the log instead.
var ErrSealingFallback = errors.New("no sealing key in [log]: the log archives and extracts are signed with the PEC signing key, which Aruba §8.1 keeps for PEC messages only; set [log] certificate and key (or pkcs11_module)")

// SealingSigner returns the key that signs log archives and extracts:
// the [log] sealing key, or, when none is configured, the [signing] key
// with warn set (ErrSealingFallback) for the caller to log.
func (c *Config) SealingSigner() (s *smime.Signer, warn error, err error) {
	if !c.Log.Configured() {
		s, err := c.Signer()
		if err != nil {
			return nil, nil, err
		}
		return s, ErrSealingFallback, nil
	}
	certs, err := LoadCerts(c.Log.Certificate)
	if err != nil {
		return nil, nil, fmt.Errorf("[log] certificate: %w", err)
	}
	var key crypto.Signer
	if c.Log.PKCS11Module != "" {
		if key, err = c.Log.asSigning().openPKCS11In("[log]", certs[0]); err != nil {
			return nil, nil, err
		}
	} else {
		if key, err = loadKey(c.Log.Key); err != nil {
			return nil, nil, fmt.Errorf("[log] key: %w", err)
		}
		if !publicKeyMatches(key, certs[0]) {
			return nil, nil, fmt.Errorf("[log] key %s is not the key of the certificate %s (subject %q): check both paths", c.Log.Key, c.Log.Certificate, certs[0].Subject.String())
		}
	}
	return &smime.Signer{Key: key, Cert: certs[0], Chain: certs[1:], Hash: digests["sha256"]}, nil, nil
}

func publicKeyMatches(k crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(k.Public())
}

// SealingRoots are the roots archives and extracts are verified against:
// [signing] trusted_roots and [log] trusted_roots.
func (c *Config) SealingRoots() (*smime.Roots, error) {
	pool := smime.NewRoots()
	pool.SHA1Cutoff, _ = c.Signing.sha1Cutoff()
	files := append(append([]string(nil), c.Signing.TrustedRoots...), c.Log.TrustedRoots...)
	if len(files) == 0 {
		return nil, errors.New("[signing] trusted_roots and [log] trusted_roots are empty: nothing to check the archive's signer against")
	}
	for _, f := range files {
		certs, err := LoadCerts(f)
		if err != nil {
			return nil, fmt.Errorf("trusted roots: %w", err)
		}
		for _, ce := range certs {
			pool.Add(ce)
		}
	}
	return pool, nil
}
