//! ack: acknowledges every message after printing one line about it:
//!   ack topic=<topic> id=<message id> attempt=<n> bytes=<payload length>

const std = @import("std");
const sluice = @import("sluice");

pub fn main() u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    const a = arena.allocator();
    const payload = sluice.readPayload(a) catch return sluice.exit_retry;
    const meta = sluice.Meta.read(a) catch return sluice.exit_retry;
    std.io.getStdOut().writer().print("ack topic={s} id={s} attempt={d} bytes={d}\n", .{
        meta.topic, meta.message_id, meta.attempt, payload.len,
    }) catch return sluice.exit_retry;
    return sluice.exit_ok;
}
