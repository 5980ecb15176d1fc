// publish fans an order out to the topics email and analytics through the
// transactional outbox, both with the order id as ordering key. An order that
// is not JSON, lacks a field or has one of the wrong type is rejected. With
// FAIL_FIRST_ATTEMPT set, attempt 1 publishes and then fails (retry): what it
// published is discarded, so downstream sees each message once.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"sluice.invalid/guest"
)

type order struct {
	OrderID json.RawMessage `json:"order_id"`
	Email   *string         `json:"email"`
	Total   json.RawMessage `json:"total"`
}

func orderID(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n uint64
	if json.Unmarshal(raw, &n) == nil {
		return strconv.FormatUint(n, 10), true
	}
	return "", false
}

func handle(m *sluice.Message) error {
	var o order
	if err := json.Unmarshal(m.Payload, &o); err != nil {
		return sluice.Reject("publish: not an order: %v", err)
	}
	id, ok := orderID(o.OrderID)
	switch {
	case !ok:
		return sluice.Reject("publish: order_id is missing or not a string or integer")
	case id == "":
		return sluice.Reject("publish: order_id is empty")
	case o.Email == nil:
		return sluice.Reject("publish: email is missing or not a string")
	case len(o.Total) == 0 || !(o.Total[0] == '-' || (o.Total[0] >= '0' && o.Total[0] <= '9')):
		return sluice.Reject("publish: total is not a number")
	}
	email, _ := json.Marshal(struct {
		OrderID string `json:"order_id"`
		Email   string `json:"email"`
	}{id, *o.Email})
	// Key order as in the other languages: event, order_id, total (as written).
	var analytics bytes.Buffer
	idJSON, _ := json.Marshal(id)
	fmt.Fprintf(&analytics, `{"event":"order_placed","order_id":%s,"total":%s}`, idJSON, o.Total)
	if err := sluice.Publish("email", email, sluice.Key(id)); err != nil {
		return err
	}
	if err := sluice.Publish("analytics", analytics.Bytes(), sluice.Key(id)); err != nil {
		return err
	}
	fmt.Printf("published order %s to email and analytics\n", id)
	if _, set := os.LookupEnv("FAIL_FIRST_ATTEMPT"); set && m.Attempt == 1 {
		return sluice.Retry("failing after publishing, as FAIL_FIRST_ATTEMPT asks")
	}
	return nil
}

func main() { sluice.Run(handle) }
