//! sluice.zig — write sluice handlers in Zig, with the standard library only.
//!
//! The Zig twin of guest-sdk/c/sluice.h (which Zig can also @cImport when it
//! links libc). A handler is a WASI command (`-target wasm32-wasi`): the payload
//! arrives on stdin, the metadata in SLUICE_* environment variables, and the
//! exit status is the outcome: 0 acknowledges, 65 rejects (straight to the DLQ),
//! anything else is retried (75 by convention). The host functions of import
//! module "sluice" are wrapped by `publish` and `log`. The exact contract is
//! docs/guest-abi.md (ABI version 1).
//!
//!     const std = @import("std");
//!     const sluice = @import("sluice");
//!
//!     pub fn main() u8 {
//!         var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
//!         const a = arena.allocator();
//!         const payload = sluice.readPayload(a) catch return sluice.exit_retry;
//!         const meta = sluice.Meta.read(a) catch return sluice.exit_retry;
//!         sluice.publish("audit", payload, .{ .key = meta.ordering_key }) catch return sluice.exit_retry;
//!         return sluice.exit_ok;
//!     }
//!
//! Build: zig build-exe -target wasm32-wasi -O ReleaseSmall --dep sluice
//!        -Mroot=main.zig -Msluice=guest-sdk/zig/sluice.zig

const std = @import("std");
const builtin = @import("builtin");

/// Acknowledge: the message is done; what the attempt published is committed.
pub const exit_ok: u8 = 0;
/// Reject (EX_DATAERR): the message is permanently bad; DLQ at once, no retry.
pub const exit_reject: u8 = 65;
/// Retryable failure (EX_TEMPFAIL); any status but 0 and 65 (up to 125) retries.
pub const exit_retry: u8 = 75;

/// The raw imports of module "sluice" (docs/guest-abi.md §6).
const host = if (builtin.target.cpu.arch.isWasm()) struct {
    extern "sluice" fn publish(
        topic_ptr: [*]const u8,
        topic_len: usize,
        payload_ptr: [*]const u8,
        payload_len: usize,
        key_ptr: [*]const u8,
        key_len: usize,
        delay_ms: i64,
    ) i32;
    extern "sluice" fn log(level: i32, msg_ptr: [*]const u8, msg_len: usize) void;
} else struct {
    // Off wasm (zig test on the host) publishes succeed and logs go nowhere.
    fn publish(_: [*]const u8, _: usize, _: [*]const u8, _: usize, _: [*]const u8, _: usize, _: i64) i32 {
        return 0;
    }
    fn log(_: i32, _: [*]const u8, _: usize) void {}
};

/// Why the host refused a publish; nothing was buffered.
pub const PublishError = error{
    /// -1: topic does not match [a-z0-9][a-z0-9._-]{0,127}.
    InvalidTopic,
    /// -2: payload longer than 1 MiB.
    PayloadTooLarge,
    /// -3: this attempt already buffered 100 messages or 8 MiB.
    OutboxFull,
    /// -4: a range outside memory.
    BadPointer,
    /// -5: topic or key is not UTF-8.
    BadUtf8,
    /// -6: key longer than 256 bytes or containing NUL.
    InvalidKey,
    /// -7: negative delay.
    InvalidDelay,
    /// A status this version does not know.
    Unknown,
};

/// Options of a publish.
pub const PublishOptions = struct {
    /// Ordering key; null or "" means none.
    key: ?[]const u8 = null,
    /// Delay before the message becomes deliverable; 0 means none.
    delay_ms: u63 = 0,
};

/// Buffers one message for the outbox: committed only if this attempt exits 0.
/// Its idempotency key derives from (this message, handler, call index), so a
/// re-run that publishes the same messages in order duplicates nothing.
pub fn publish(topic: []const u8, payload: []const u8, opts: PublishOptions) PublishError!void {
    const key = opts.key orelse "";
    const status = host.publish(topic.ptr, topic.len, payload.ptr, payload.len, key.ptr, key.len, opts.delay_ms);
    return switch (status) {
        0 => {},
        -1 => error.InvalidTopic,
        -2 => error.PayloadTooLarge,
        -3 => error.OutboxFull,
        -4 => error.BadPointer,
        -5 => error.BadUtf8,
        -6 => error.InvalidKey,
        -7 => error.InvalidDelay,
        else => error.Unknown,
    };
}

/// Log levels of the ABI.
pub const Level = enum(i32) { trace = 0, debug = 1, info = 2, warn = 3, err = 4 };

/// Writes one structured log line through the host; kept whatever the outcome
/// (at most 1,000 lines and 64 KiB per attempt).
pub fn log(level: Level, msg: []const u8) void {
    host.log(@intFromEnum(level), msg.ptr, msg.len);
}

/// Formats and logs a line (cut at 1 KiB).
pub fn logf(level: Level, comptime fmt: []const u8, args: anytype) void {
    var buf: [1024]u8 = undefined;
    const msg = std.fmt.bufPrint(&buf, fmt, args) catch buf[0..];
    log(level, msg);
}

/// Reads all of stdin: the payload, exactly as enqueued.
pub fn readPayload(allocator: std.mem.Allocator) ![]u8 {
    return std.io.getStdIn().readToEndAlloc(allocator, std.math.maxInt(usize));
}

/// The message's metadata. Strings are "" when a variable is missing (outside
/// sluice); `ordering_key` is null when the message has none; `attempt` and
/// `max_attempts` are 1 when missing.
pub const Meta = struct {
    topic: []const u8,
    handler: []const u8,
    message_id: []const u8,
    idempotency_key: []const u8,
    ordering_key: ?[]const u8,
    /// RFC 3339 UTC, e.g. 2026-11-27T22:10:43.123Z.
    enqueued_at: []const u8,
    /// 1-based.
    attempt: u32,
    max_attempts: u32,

    /// Reads the SLUICE_* variables (the strings live in `allocator`).
    pub fn read(allocator: std.mem.Allocator) !Meta {
        const env = try allocator.create(std.process.EnvMap);
        env.* = try std.process.getEnvMap(allocator);
        const attempt = number(env, "SLUICE_ATTEMPT") orelse 1;
        const key = env.get("SLUICE_ORDERING_KEY");
        return .{
            .topic = env.get("SLUICE_TOPIC") orelse "",
            .handler = env.get("SLUICE_HANDLER") orelse "",
            .message_id = env.get("SLUICE_MESSAGE_ID") orelse "",
            .idempotency_key = env.get("SLUICE_IDEMPOTENCY_KEY") orelse "",
            .ordering_key = if (key != null and key.?.len > 0) key else null,
            .enqueued_at = env.get("SLUICE_ENQUEUED_AT") orelse "",
            .attempt = attempt,
            .max_attempts = @max(number(env, "SLUICE_MAX_ATTEMPTS") orelse attempt, attempt),
        };
    }

    fn number(env: *const std.process.EnvMap, name: []const u8) ?u32 {
        const text = env.get(name) orelse return null;
        const n = std.fmt.parseInt(u32, text, 10) catch return null;
        return if (n == 0) null else n;
    }
};
