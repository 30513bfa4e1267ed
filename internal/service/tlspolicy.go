package service

import (
	"log/slog"
	"path/filepath"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
)

// TLSPolicyPath is where the Postfix smtp_tls_policy_maps source is
// written on each index sync ([index] tls_policy_map): by default
// tls_policy in the index cache directory; "" when it is "off".
func TLSPolicyPath(cfg *config.Config) string {
	switch p := cfg.Index.TLSPolicyMap; p {
	case "off":
		return ""
	case "":
		return filepath.Join(IndexCacheDir(cfg), "tls_policy")
	default:
		return p
	}
}

// WriteTLSPolicy writes the TLS policy map of ix to path (Aruba §7.3.3:
// TLS towards every provider) and logs what the operator must do when
// it changed. A failure is logged, not returned: the index is served
// anyway, and Postfix keeps the table it has.
func WriteTLSPolicy(ix *index.Index, path string, log *slog.Logger) (changed bool, err error) {
	if path == "" || ix == nil {
		return false, nil
	}
	changed, skipped, err := index.WriteTLSPolicy(ix, path)
	if len(skipped) > 0 {
		log.Warn("providers' index domains left out of the TLS policy map: not plain host names", "domains", skipped)
	}
	if err != nil {
		log.Error("cannot write the TLS policy map for Postfix; check [index] tls_policy_map and its directory's permissions", "path", path, "error", err)
		return false, err
	}
	if changed {
		log.Info("TLS policy map for Postfix updated: run postmap on it and postfix reload (smtp_tls_policy_maps)", "path", path)
	}
	return changed, nil
}
