//! validate: acknowledges a payload that is valid JSON (any value) and rejects
//! anything else with exit status 65: straight to the DLQ, no retry.

const std = @import("std");
const sluice = @import("sluice");
const json = @import("json");

pub fn main() u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    const a = arena.allocator();
    const payload = sluice.readPayload(a) catch return sluice.exit_retry;
    if (!json.valid(a, payload)) {
        std.io.getStdErr().writer().print("validate: reject: malformed JSON payload ({d} bytes)\n", .{payload.len}) catch {};
        return sluice.exit_reject;
    }
    std.io.getStdOut().writer().print("valid: {d} bytes of JSON\n", .{payload.len}) catch
        return sluice.exit_retry;
    return sluice.exit_ok;
}
