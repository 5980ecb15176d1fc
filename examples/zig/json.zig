//! The JSON rules the Zig examples share, on top of std.json: serde_json's
//! nesting limit and its way of writing strings, so every language's examples
//! accept the same payloads and publish the same bytes. Not part of the SDK.

const std = @import("std");

/// Containers may nest 127 deep, as in serde_json (the Rust examples).
pub const max_nesting = 127;

/// True if `text`, assumed to be JSON, nests arrays and objects at most
/// `max_nesting` deep (brackets inside strings do not count).
pub fn nestingOk(text: []const u8) bool {
    var depth: usize = 0;
    var in_string = false;
    var escaped = false;
    for (text) |c| {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        switch (c) {
            '"' => in_string = true,
            '[', '{' => {
                depth += 1;
                if (depth > max_nesting) return false;
            },
            ']', '}' => depth -|= 1,
            else => {},
        }
    }
    return true;
}

/// Strict validation: std.json's syntax and UTF-8 checks plus `nestingOk`.
pub fn valid(allocator: std.mem.Allocator, text: []const u8) bool {
    if (!nestingOk(text)) return false;
    return std.json.validate(allocator, text) catch false;
}

/// Writes `s` as a JSON string literal: `"` and `\` escaped, control
/// characters as \b \f \n \r \t or \u00XX, everything else as is.
pub fn writeString(writer: anytype, s: []const u8) !void {
    try writer.writeByte('"');
    for (s) |c| {
        switch (c) {
            '"' => try writer.writeAll("\\\""),
            '\\' => try writer.writeAll("\\\\"),
            0x08 => try writer.writeAll("\\b"),
            0x0C => try writer.writeAll("\\f"),
            '\n' => try writer.writeAll("\\n"),
            '\r' => try writer.writeAll("\\r"),
            '\t' => try writer.writeAll("\\t"),
            0...0x07, 0x0B, 0x0E...0x1F => try writer.print("\\u{x:0>4}", .{c}),
            else => try writer.writeByte(c),
        }
    }
    try writer.writeByte('"');
}
