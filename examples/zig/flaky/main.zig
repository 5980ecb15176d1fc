//! flaky: fails with exit status 75 (retry) on attempts 1 and 2, then succeeds.

const std = @import("std");
const sluice = @import("sluice");

const succeeds_on = 3;

pub fn main() u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    const meta = sluice.Meta.read(arena.allocator()) catch return sluice.exit_retry;
    if (meta.attempt < succeeds_on) {
        std.io.getStdErr().writer().print("flaky: attempt {d} of {d} fails on purpose\n", .{
            meta.attempt, meta.max_attempts,
        }) catch {};
        return sluice.exit_retry;
    }
    std.io.getStdOut().writer().print("flaky: succeeded on attempt {d}\n", .{meta.attempt}) catch
        return sluice.exit_retry;
    return sluice.exit_ok;
}
