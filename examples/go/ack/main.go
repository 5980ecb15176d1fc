// ack acknowledges every message, after printing one line about it:
// `ack topic=<topic> id=<message id> attempt=<n> bytes=<payload length>`.
package main

import (
	"fmt"

	"sluice.invalid/guest"
)

func handle(m *sluice.Message) error {
	fmt.Printf("ack topic=%s id=%s attempt=%d bytes=%d\n", m.Topic, m.ID, m.Attempt, len(m.Payload))
	return nil
}

func main() { sluice.Run(handle) }
