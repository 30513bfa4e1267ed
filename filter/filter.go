// Package filter is the milter adapter of the access and incoming points
// (RFC 6109 §2.2.1, §2.2.2): it collects what Postfix sends, asks the
// rule core (package point), commits the Decision's transaction to the
// store and only then answers Postfix, so an accepted message always has
// its receipts durably recorded (or held until Postfix queues it).
package filter
