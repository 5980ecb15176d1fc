// Package sluice is the Go guest SDK for sluice handlers (ABI 1,
// docs/guest-abi.md): a handler is a wasip1 command built with
// GOOS=wasip1 GOARCH=wasm; the payload arrives on stdin, the metadata in
// SLUICE_* environment variables, and the exit status is the outcome.
//
//	func handle(m *sluice.Message) error {
//		if !json.Valid(m.Payload) {
//			return sluice.Reject("not JSON")
//		}
//		return sluice.Publish("audit", m.Payload, sluice.Key(m.ID))
//	}
//
//	func main() { sluice.Run(handle) }
//
// Run exits 0 when the handler returns nil, 65 (reject: straight to the
// dead-letter queue) for a Reject error, and 75 (retry with backoff) for a
// Retry error or any other error. Each attempt runs in a fresh instance.
package sluice

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"unsafe"
)

// Exit statuses of ABI 1.
const (
	ExitOK     = 0
	ExitReject = 65
	ExitRetry  = 75
)

// Message is one delivery.
type Message struct {
	ID             string
	Topic          string
	Handler        string
	IdempotencyKey string
	// OrderingKey is empty when the message has none.
	OrderingKey string
	Attempt     uint32
	MaxAttempts uint32
	EnqueuedAt  string
	Payload     []byte
}

// Read builds the Message of this attempt from stdin and the environment.
func Read() (*Message, error) {
	payload, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, fmt.Errorf("reading the payload: %w", err)
	}
	num := func(name string) uint32 {
		n, _ := strconv.ParseUint(os.Getenv(name), 10, 32)
		return uint32(n)
	}
	return &Message{
		ID:             os.Getenv("SLUICE_MESSAGE_ID"),
		Topic:          os.Getenv("SLUICE_TOPIC"),
		Handler:        os.Getenv("SLUICE_HANDLER"),
		IdempotencyKey: os.Getenv("SLUICE_IDEMPOTENCY_KEY"),
		OrderingKey:    os.Getenv("SLUICE_ORDERING_KEY"),
		Attempt:        num("SLUICE_ATTEMPT"),
		MaxAttempts:    num("SLUICE_MAX_ATTEMPTS"),
		EnqueuedAt:     os.Getenv("SLUICE_ENQUEUED_AT"),
		Payload:        payload,
	}, nil
}

type rejectError struct{ reason string }

func (e *rejectError) Error() string { return e.reason }

type retryError struct{ reason string }

func (e *retryError) Error() string { return e.reason }

// Reject is a permanent failure: no retry, the message goes to the DLQ.
func Reject(format string, args ...any) error {
	return &rejectError{fmt.Sprintf(format, args...)}
}

// Retry is a temporary failure: retried with backoff while attempts remain.
func Retry(format string, args ...any) error {
	return &retryError{fmt.Sprintf(format, args...)}
}

// ExitCode is the exit status Run uses for a handler's result.
func ExitCode(err error) int {
	var reject *rejectError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &reject):
		return ExitReject
	default:
		return ExitRetry
	}
}

// Run reads the message, calls handle and exits with its outcome; the
// error's text goes to stderr (the attempt's log).
func Run(handle func(*Message) error) {
	m, err := Read()
	if err == nil {
		err = handle(m)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(ExitCode(err))
}

//go:wasmimport sluice publish
func hostPublish(topic unsafe.Pointer, topicLen uint32, payload unsafe.Pointer, payloadLen uint32, key unsafe.Pointer, keyLen uint32, delayMs int64) int32

//go:wasmimport sluice log
func hostLog(level int32, msg unsafe.Pointer, msgLen uint32)

// PublishError is a refused publish; Code is ABI 1's code (-1 … -7).
type PublishError struct{ Code int32 }

func (e *PublishError) Error() string {
	names := map[int32]string{-1: "invalid topic", -2: "payload too large", -3: "outbox full",
		-4: "bad pointer", -5: "not UTF-8", -6: "invalid ordering key", -7: "invalid delay"}
	return fmt.Sprintf("sluice publish refused: %s (%d)", names[e.Code], e.Code)
}

// Option sets an optional field of a published message.
type Option func(*publishOptions)

type publishOptions struct {
	key     string
	delayMs int64
}

// Key sets the ordering key.
func Key(key string) Option { return func(o *publishOptions) { o.key = key } }

// DelayMs delays delivery by ms milliseconds.
func DelayMs(ms int64) Option { return func(o *publishOptions) { o.delayMs = ms } }

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// Publish buffers a message in the attempt's outbox: committed only if the
// attempt succeeds. A refusal is a *PublishError (returned as is, it retries).
func Publish(topic string, payload []byte, opts ...Option) error {
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	t, k := []byte(topic), []byte(o.key)
	code := hostPublish(ptr(t), uint32(len(t)), ptr(payload), uint32(len(payload)), ptr(k), uint32(len(k)), o.delayMs)
	if code != 0 {
		return &PublishError{Code: code}
	}
	return nil
}

// Log levels of Log.
const (
	Trace int32 = iota
	Debug
	Info
	Warn
	Error
)

// Log adds a line to the attempt's log.
func Log(level int32, msg string) {
	b := []byte(msg)
	hostLog(level, ptr(b), uint32(len(b)))
}
