package point

import (
	"fmt"
	"time"

	"github.com/emersion/go-smtp"
)

// errMailboxClosed answers mail for a registered mailbox that may not
// receive (suspended, closed or disabled: MayUse). 5.2.1 is RFC
// 3463's "mailbox disabled, not accepting messages"; for a transport
// envelope Decide turns it into a non-delivery notice (RFC 6109 §3.3.3)
// whose cause reads "casella del destinatario disabilitata".
var errMailboxClosed = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 1},
	Message: "PEC mailbox closed or suspended: it does not receive messages"}

// holdClosed takes out of the groups of p the recipients whose registered
// mailbox may not receive at now, as if Dovecot had refused them at RCPT:
// a transport envelope gets its non-delivery notice, ordinary mail a 5xx.
// Notices (receipts of what the mailbox sent) still reach a mailbox that
// can log in (suspended, or closed within its read-only period). An
// unreadable registry fails the transaction (the caller tempfails).
func (d *Delivery) holdClosed(now time.Time, p *DeliveryPlan) error {
	if d.Mailboxes == nil {
		return nil
	}
	for _, g := range p.Groups {
		keep := g.Rcpts[:0:0]
		for _, r := range g.Rcpts {
			st, ok, err := d.Mailboxes.MailboxStatus(r, now)
			if err != nil {
				return fmt.Errorf("cannot read the mailbox registry for %s: %w", r, err)
			}
			_, receive, login := MayUse(st.State)
			if !ok || receive || (g.Treatment == Unchanged && login) {
				keep = append(keep, r)
				continue
			}
			g.Done = append(g.Done, MailboxResult{Rcpt: r, Err: errMailboxClosed, At: now})
		}
		g.Rcpts = keep
	}
	return nil
}
