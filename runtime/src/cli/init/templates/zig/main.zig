//! {{name}}: a sluice handler (ABI 1, guest-sdk/zig/sluice.zig).
const std = @import("std");
const sluice = @import("sluice");

pub fn main() u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    const a = arena.allocator();
    const payload = sluice.readPayload(a) catch return sluice.exit_retry;
    const meta = sluice.Meta.read(a) catch return sluice.exit_retry;
    std.io.getStdOut().writer().print("{{name}} handled {s} on {s} (attempt {d}, {d} bytes)\n", .{
        meta.message_id, meta.topic, meta.attempt, payload.len,
    }) catch return sluice.exit_retry;
    return sluice.exit_ok;
}
