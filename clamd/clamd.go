// Package clamd is a small client for the clamd daemon (ClamAV): PING,
// VERSION and INSTREAM scans.
//
// Protocol (clamd(8), "COMMANDS"): commands are sent with the "z" prefix and
// NUL-terminated ("zINSTREAM\x00"); replies are NUL-terminated too.
// INSTREAM data is sent as chunks of <uint32 big-endian length><bytes>,
// terminated by a zero-length chunk.
//
// Every failure is returned as an error: callers must fail closed (tempfail),
// never treat an error as "clean".
package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// Defaults applied when the corresponding Client field is zero.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultChunkSize = 64 << 10
)

// maxReply bounds the reply read from clamd; real replies are a few dozen bytes.
const maxReply = 4096

// ErrSizeLimit means clamd refused the stream because it is larger than its
// StreamMaxLength ("INSTREAM size limit exceeded. ERROR"). The data was not scanned.
var ErrSizeLimit = errors.New("clamd: stream larger than clamd's StreamMaxLength, not scanned: raise StreamMaxLength in clamd.conf or reject the message")

// Client talks to one clamd. Addr is required; Network defaults to "tcp".
type Client struct {
	Network   string        // "tcp" or "unix"
	Addr      string        // "127.0.0.1:3310" or "/run/clamav/clamd.ctl"
	Timeout   time.Duration // whole operation (dial + write + read); default 30s
	ChunkSize int           // INSTREAM chunk size; default 64 KiB
	// OnError, when set, is called with every error Scan, Ping or Version
	// returns (e.g. to count them in metrics). It must not block.
	OnError func(err error)
}

// failed passes a non-nil err to OnError and returns it.
func (c *Client) failed(err error) error {
	if err != nil && c.OnError != nil {
		c.OnError(err)
	}
	return err
}

// Result of a scan. Signature is set only when Infected.
type Result struct {
	Infected  bool
	Signature string // e.g. "Test.EICAR.NDB.UNOFFICIAL"
}

// Ping sends PING and expects PONG.
func (c *Client) Ping(ctx context.Context) error { return c.failed(c.ping(ctx)) }

func (c *Client) ping(ctx context.Context) error {
	reply, err := c.simple(ctx, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("clamd at %s: unexpected reply %q to PING: is that really clamd?", c.where(), reply)
	}
	return nil
}

// Version returns clamd's VERSION reply, e.g. "ClamAV 1.4.6/27000/...".
func (c *Client) Version(ctx context.Context) (string, error) {
	v, err := c.version(ctx)
	return v, c.failed(err)
}

func (c *Client) version(ctx context.Context) (string, error) {
	reply, err := c.simple(ctx, "VERSION")
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(reply, "ClamAV ") {
		return "", fmt.Errorf("clamd at %s: unexpected reply %q to VERSION: is that really clamd?", c.where(), reply)
	}
	return reply, nil
}

// Scan streams r to clamd with INSTREAM and returns the verdict.
// Errors (dial, timeout, ErrSizeLimit, clamd "... ERROR", unparsable reply)
// mean "not scanned": fail closed.
func (c *Client) Scan(ctx context.Context, r io.Reader) (Result, error) {
	res, err := c.scan(ctx, r)
	return res, c.failed(err)
}

func (c *Client) scan(ctx context.Context, r io.Reader) (Result, error) {
	conn, ctx, cancel, err := c.dial(ctx)
	if err != nil {
		return Result{}, err
	}
	defer cancel()
	defer conn.Close()

	werr := c.stream(conn, r)
	if werr != nil {
		var rerr readErr
		if errors.As(werr, &rerr) {
			// Our own input failed: nothing wrong with clamd.
			return Result{}, fmt.Errorf("clamd: reading the data to scan: %w", rerr.err)
		}
		// clamd closes the socket as soon as the stream exceeds StreamMaxLength,
		// so the write fails (EPIPE/ECONNRESET); its reply may already be readable.
		if reply, err := readReply(conn); err == nil {
			if _, perr := parseReply(reply); perr != nil {
				return Result{}, c.wrapReplyErr(perr)
			}
			// A verdict before the end of the stream should not happen.
			return Result{}, fmt.Errorf("clamd at %s answered %q before the stream ended: not trusting it", c.where(), reply)
		}
		return Result{}, c.ioErr(ctx, "sending data", werr)
	}
	reply, err := readReply(conn)
	if err != nil {
		return Result{}, c.ioErr(ctx, "reading the scan result", err)
	}
	res, err := parseReply(reply)
	if err != nil {
		return Result{}, c.wrapReplyErr(err)
	}
	return res, nil
}

// readErr marks a failure of the caller's reader (as opposed to the socket).
type readErr struct{ err error }

func (e readErr) Error() string { return e.err.Error() }

// stream sends zINSTREAM, the chunks and the terminating zero-length chunk.
func (c *Client) stream(conn net.Conn, r io.Reader) error {
	size := c.ChunkSize
	if size <= 0 {
		size = DefaultChunkSize
	}
	w := bufio.NewWriterSize(conn, size+4)
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return err
	}
	buf := make([]byte, 4+size)
	for {
		n, err := io.ReadFull(r, buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			if _, werr := w.Write(buf[:4+n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return readErr{err}
		}
	}
	if _, err := w.Write([]byte{0, 0, 0, 0}); err != nil {
		return err
	}
	return w.Flush()
}

// parseReply interprets an INSTREAM reply (with or without the trailing NUL):
//
//	stream: OK
//	stream: <signature> FOUND
//	<message> ERROR                      (e.g. "INSTREAM size limit exceeded. ERROR")
func parseReply(reply string) (Result, error) {
	s := strings.TrimRight(reply, "\x00\r\n ")
	switch {
	case s == "stream: OK":
		return Result{}, nil
	case strings.HasPrefix(s, "stream: ") && strings.HasSuffix(s[len("stream: "):], " FOUND"):
		sig := strings.TrimSpace(strings.TrimSuffix(s[len("stream: "):], " FOUND"))
		if sig == "" || strings.ContainsAny(sig, "\x00\r\n") {
			return Result{}, fmt.Errorf("clamd: malformed FOUND reply %q", reply)
		}
		return Result{Infected: true, Signature: sig}, nil
	case strings.HasSuffix(s, " ERROR") || s == "ERROR":
		if strings.Contains(s, "size limit exceeded") {
			return Result{}, ErrSizeLimit
		}
		return Result{}, fmt.Errorf("clamd reported an error: %q", s)
	default:
		return Result{}, fmt.Errorf("clamd: unexpected reply %q", reply)
	}
}

func (c *Client) wrapReplyErr(err error) error {
	if errors.Is(err, ErrSizeLimit) {
		return err
	}
	return fmt.Errorf("clamd at %s: %w (see clamd's log)", c.where(), err)
}

// simple sends a command with no payload and returns the reply without the NUL.
func (c *Client) simple(ctx context.Context, cmd string) (string, error) {
	conn, ctx, cancel, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	defer conn.Close()
	if _, err := conn.Write([]byte("z" + cmd + "\x00")); err != nil {
		return "", c.ioErr(ctx, "sending "+cmd, err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return "", c.ioErr(ctx, "reading the reply to "+cmd, err)
	}
	return strings.TrimRight(reply, "\x00\r\n "), nil
}

// dial connects and arms the deadline: the earlier of ctx's deadline and
// now+Timeout. Cancelling ctx also interrupts blocked I/O.
func (c *Client) dial(ctx context.Context) (net.Conn, context.Context, func(), error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancelCtx := context.WithTimeout(ctx, timeout)
	network := c.Network
	if network == "" {
		network = "tcp"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, c.Addr)
	if err != nil {
		timedOut := ctx.Err() != nil
		cancelCtx()
		if timedOut {
			return nil, nil, nil, fmt.Errorf("clamd at %s: no connection within the time limit (%v): is clamd overloaded or the address filtered? %w", c.where(), timeout, err)
		}
		return nil, nil, nil, fmt.Errorf("clamd at %s unreachable: is clamd running and listening there (TCPSocket/TCPAddr or LocalSocket in clamd.conf)? %w", c.where(), err)
	}
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return conn, ctx, func() { stop(); cancelCtx() }, nil
}

// ioErr turns a socket error into an actionable one.
func (c *Client) ioErr(ctx context.Context, what string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
		if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
			return fmt.Errorf("clamd at %s: %s: cancelled: %w", c.where(), what, cerr)
		}
		return fmt.Errorf("clamd at %s: %s: timed out: clamd is too slow or hung; check its load (MaxThreads, MaxQueue) or raise the timeout: %w", c.where(), what, err)
	}
	if isClosedByPeer(err) {
		return fmt.Errorf("clamd at %s closed the connection while %s: stream too large (StreamMaxLength) or clamd restarting; see clamd's log: %w", c.where(), what, err)
	}
	return fmt.Errorf("clamd at %s: %s: %w", c.where(), what, err)
}

func isClosedByPeer(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// readReply reads up to the terminating NUL (or EOF after some bytes).
func readReply(conn net.Conn) (string, error) {
	var buf bytes.Buffer
	b := make([]byte, 512)
	for buf.Len() < maxReply {
		n, err := conn.Read(b)
		buf.Write(b[:n])
		if i := bytes.IndexByte(buf.Bytes(), 0); i >= 0 {
			return string(buf.Bytes()[:i]), nil
		}
		if err == io.EOF && buf.Len() > 0 {
			return buf.String(), nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("reply longer than %d bytes without NUL terminator", maxReply)
}

func (c *Client) where() string {
	if c.Network == "" {
		return c.Addr
	}
	return c.Network + ":" + c.Addr
}

// SignatureDate reads the build time of the signature database from a
// VERSION reply ("ClamAV 1.0.7/27479/Sat Dec  7 09:37:56 2024"; clamd
// prints it in its local time). ok is false when the reply has no date:
// clamd then runs on databases without an official daily.cvd (e.g. only
// local .ndb/.hdb files).
func SignatureDate(version string) (time.Time, bool) {
	parts := strings.SplitN(version, "/", 3)
	if len(parts) != 3 {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(time.ANSIC, strings.TrimSpace(parts[2]), time.Local)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// StreamLimitAtLeast asks clamd whether it takes an INSTREAM of n bytes
// without scanning anything: it announces one chunk of n bytes and sends
// none. clamd compares the announced length with its StreamMaxLength and
// answers "INSTREAM size limit exceeded" at once when it is too big (then
// false); otherwise it waits for the data, and after wait with no answer
// the connection is closed (true; clamd logs the aborted stream).
func (c *Client) StreamLimitAtLeast(ctx context.Context, n int64, wait time.Duration) (bool, error) {
	if n <= 0 || n > 1<<32-1 {
		return false, fmt.Errorf("clamd: stream size %d out of range", n)
	}
	conn, ctx, cancel, err := c.dial(ctx)
	if err != nil {
		return false, c.failed(err)
	}
	defer cancel()
	defer conn.Close()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(n))
	if _, err := conn.Write(append([]byte("zINSTREAM\x00"), hdr[:]...)); err != nil {
		return false, c.failed(c.ioErr(ctx, "sending the stream size probe", err))
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	reply, err := readReply(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		return true, nil // waiting for the data: the size is allowed
	}
	if err != nil {
		if isClosedByPeer(err) {
			return false, nil // closed at once: refused
		}
		return false, c.failed(c.ioErr(ctx, "reading the reply to the stream size probe", err))
	}
	if _, perr := parseReply(reply); errors.Is(perr, ErrSizeLimit) {
		return false, nil
	}
	return false, c.failed(fmt.Errorf("clamd at %s: unexpected reply %q to an announced stream of %d bytes", c.where(), reply, n))
}
