// Package docs holds the rules index (rules.md: every RFC 6109 rule the
// project implements, where and which test proves it), the RFC text it
// cites (rfc/), and the test that keeps both true.
package docs
