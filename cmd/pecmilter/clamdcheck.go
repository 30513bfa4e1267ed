package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/pecgo/pec/clamd"
)

// Start-up check of the antivirus. pecmilter does not wait for it: while
// clamd does not answer every message is tempfailed (fail closed), but the
// 12 h / 24 h timers and the outbox must go on, and at boot clamd may
// still be loading its signatures. So the check runs beside the milters
// and says clearly what is wrong. (Variables for the tests.)
var (
	clamdPatience     = time.Minute        // then "clamd not answering" is an error
	clamdRetry        = 2 * time.Second    // PING interval while waiting
	clamdRemind       = 10 * time.Minute   // the error is repeated this often
	maxSignatureAge   = 7 * 24 * time.Hour // older signatures: a warning
	streamProbeWindow = time.Second        // see clamd.StreamLimitAtLeast
)

// checkClamd pings clamd until it answers (or ctx ends), then reads its
// version and signature age and checks that its StreamMaxLength takes
// maxMessage bytes.
func checkClamd(ctx context.Context, c *clamd.Client, maxMessage int64, log *slog.Logger) {
	start := time.Now()
	var reported time.Time
	for {
		err := c.Ping(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if waited := time.Since(start); waited >= clamdPatience && time.Since(reported) >= clamdRemind {
			reported = time.Now()
			log.Error("clamd does not answer PING: every message is tempfailed (4.7.1) until it does. Check that clamav-daemon is running (systemctl status clamav-daemon), that [clamd] network/address name its socket (LocalSocket in /etc/clamav/clamd.conf), and that it has signature databases: Debian starts clamd only once /var/lib/clamav holds them (run freshclam, or copy main.cvd, daily.cvd and bytecode.cvd there when offline)",
				"clamd", c.Network+":"+c.Addr, "waited", waited.Round(time.Second), "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(clamdRetry):
		}
	}
	v, err := c.Version(ctx)
	if err != nil {
		log.Error("clamd answers PING but not VERSION", "clamd", c.Network+":"+c.Addr, "error", err)
		return
	}
	attrs := []any{"clamd", c.Network + ":" + c.Addr, "version", v}
	if at, ok := clamd.SignatureDate(v); !ok {
		log.Warn("clamd reports no official signature database (no daily.cvd): it scans with local signatures only; run freshclam (clamav-freshclam.service) to get ClamAV's", attrs...)
	} else if age := time.Since(at); age > maxSignatureAge {
		log.Warn("clamd's signatures are old: is clamav-freshclam running and can it reach ClamAV's mirrors? (journalctl -u clamav-freshclam)",
			append(attrs, "signatures_built", at, "age_days", int(age.Hours()/24))...)
	} else {
		log.Info("clamd ready", append(attrs, "signatures_built", at)...)
	}
	ok, err := c.StreamLimitAtLeast(ctx, maxMessage, streamProbeWindow)
	switch {
	case err != nil:
		log.Warn("cannot check clamd's StreamMaxLength", append(attrs, "error", err)...)
	case !ok:
		log.Error("clamd's StreamMaxLength is below the largest message pecmilter accepts ([limits] max_size_times_rcpts): bigger messages are refused (552 5.3.4, with a non-acceptance notice at the access point). Set StreamMaxLength to at least that in /etc/clamav/clamd.conf (Debian: dpkg-reconfigure clamav-daemon, question StreamMaxLength in MB) and restart clamav-daemon",
			append(attrs, "needed_bytes", maxMessage)...)
	default:
		log.Info("clamd takes streams of the largest message", append(attrs, "bytes", maxMessage)...)
	}
}
