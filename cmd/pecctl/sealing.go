package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/smime"
)

// sealingSigner is the key that signs log archives and extracts: [log]'s
// sealing key, or the PEC key with a warning (slog and stderr) while none
// is configured (Aruba §8.1: the PEC key signs only PEC messages).
func sealingSigner(cfg *config.Config, cmd string, stderr io.Writer) (*smime.Signer, error) {
	s, warn, err := cfg.SealingSigner()
	if err != nil {
		return nil, err
	}
	if warn != nil {
		slog.Warn("log sealed with the PEC signing key", "command", "pecctl "+cmd, "reason", warn.Error())
		fmt.Fprintf(stderr, "pecctl %s: warning: %v\n", cmd, warn)
	}
	return s, nil
}
