//! publish: fans an order {"order_id": "A-1" | 17, "email": "...", "total": 12.5}
//! out to topic `email` ({"order_id":..,"email":..}) and topic `analytics`
//! ({"event":"order_placed","order_id":..,"total":..}), both with the order id
//! as ordering key. Both are committed only if this attempt exits 0.

const std = @import("std");
const sluice = @import("sluice");
const json = @import("json");

fn reject(why: []const u8) u8 {
    std.io.getStdErr().writer().print("publish: reject: {s}\n", .{why}) catch {};
    return sluice.exit_reject;
}

fn send(topic: []const u8, body: []const u8, key: []const u8) bool {
    sluice.publish(topic, body, .{ .key = key }) catch |err| {
        std.io.getStdErr().writer().print("publish: retry: publish to {s} refused: {s}\n", .{ topic, @errorName(err) }) catch {};
        return false;
    };
    return true;
}

fn emailRequest(w: anytype, id: []const u8, email: []const u8) !void {
    try w.writeAll("{\"order_id\":");
    try json.writeString(w, id);
    try w.writeAll(",\"email\":");
    try json.writeString(w, email);
    try w.writeAll("}");
}

fn orderPlaced(w: anytype, id: []const u8, total: []const u8) !void {
    try w.writeAll("{\"event\":\"order_placed\",\"order_id\":");
    try json.writeString(w, id);
    try w.print(",\"total\":{s}}}", .{total});
}

pub fn main() u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    const a = arena.allocator();
    const payload = sluice.readPayload(a) catch return sluice.exit_retry;
    if (!json.valid(a, payload)) return reject("malformed JSON payload");
    // parse_numbers = false keeps numbers as written, so `total` passes unchanged.
    const parsed = std.json.parseFromSliceLeaky(std.json.Value, a, payload, .{ .parse_numbers = false }) catch
        return reject("malformed JSON payload");
    const order = switch (parsed) {
        .object => |o| o,
        else => return reject("an order is a JSON object"),
    };
    const id_value = order.get("order_id") orelse return reject("an order needs order_id, email and total");
    const email_value = order.get("email") orelse return reject("an order needs order_id, email and total");
    const total_value = order.get("total") orelse return reject("an order needs order_id, email and total");
    const email = switch (email_value) {
        .string => |s| s,
        else => return reject("email is not a string"),
    };
    const total = switch (total_value) {
        .number_string => |s| s,
        else => return reject("total is not a number"),
    };
    const id = switch (id_value) {
        .string => |s| s,
        // A non-negative integer that fits in 64 bits, used as text.
        .number_string => |s| if (std.fmt.parseInt(u64, s, 10)) |_| s else |_|
            return reject("order_id is neither a string nor a non-negative integer"),
        else => return reject("order_id is neither a string nor a non-negative integer"),
    };
    if (id.len == 0) return reject("order_id is empty");

    var body = std.ArrayList(u8).init(a);
    emailRequest(body.writer(), id, email) catch return sluice.exit_retry;
    if (!send("email", body.items, id)) return sluice.exit_retry;
    body.clearRetainingCapacity();
    orderPlaced(body.writer(), id, total) catch return sluice.exit_retry;
    if (!send("analytics", body.items, id)) return sluice.exit_retry;

    std.io.getStdOut().writer().print("published order {s} to email and analytics\n", .{id}) catch
        return sluice.exit_retry;
    // With FAIL_FIRST_ATTEMPT set, attempt 1 fails after publishing: the outbox
    // discards what it published, and the retry publishes it again, once.
    const meta = sluice.Meta.read(a) catch return sluice.exit_retry;
    const fail_first = std.process.hasEnvVar(a, "FAIL_FIRST_ATTEMPT") catch false;
    if (fail_first and meta.attempt == 1) {
        sluice.log(.warn, "failing after publishing, as FAIL_FIRST_ATTEMPT asks");
        return sluice.exit_retry;
    }
    return sluice.exit_ok;
}
