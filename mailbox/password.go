package mailbox

import (
	"errors"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Scheme is the Dovecot password scheme of the hashes (doveadm pw -l):
// bcrypt, which Dovecot checks with the system's crypt(3) (libxcrypt on
// Debian) and Go produces without cgo.
const Scheme = "BLF-CRYPT"

// Cost is the bcrypt cost: every IMAP and submission login pays it.
var Cost = 10

// HashPassword is password in Dovecot's {BLF-CRYPT} form.
func HashPassword(password string) (string, error) {
	switch {
	case password == "":
		return "", errors.New("empty password: give the holder a password")
	case len(password) > 72:
		return "", errors.New("password longer than 72 bytes: bcrypt ignores the rest, use a shorter one")
	case strings.ContainsAny(password, "\n\r\x00"):
		return "", errors.New("the password contains a line end or NUL")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), Cost)
	if err != nil {
		return "", err
	}
	return "{" + Scheme + "}" + string(h), nil
}

// CheckPassword reports whether password matches a {BLF-CRYPT} hash.
func CheckPassword(hash, password string) bool {
	h, ok := strings.CutPrefix(hash, "{"+Scheme+"}")
	return ok && bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) == nil
}
