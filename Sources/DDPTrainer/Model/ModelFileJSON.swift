/// A line and column (both from 1; the column counts characters, not bytes) in a model file.
struct TextPosition: Equatable {
    let line: Int, column: Int
}

/// A JSON value that remembers where it starts, so that a message about it can name the line.
/// Objects keep their members in file order (duplicates included; the model reader refuses them),
/// and numbers keep their literal, so that integers and Floats are read from the text exactly.
struct JSONValue {
    enum Kind {
        case object([Member])
        case array([JSONValue])
        case string(String)
        case number(String)
        case bool(Bool)
        case null
    }
    struct Member {
        let key: String
        let keyAt: TextPosition
        let value: JSONValue
    }
    let kind: Kind
    let at: TextPosition

    /// How a message shows a value it did not expect: short, as written.
    var shortText: String {
        switch kind {
        case .object: return "an object"
        case .array: return "a list"
        case let .string(s): return jsonQuoted(s)
        case let .number(n): return n
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
}

struct JSONSyntaxError: Error, Equatable {
    let at: TextPosition
    let problem: String
}

/// JSON (RFC 8259) with positions, and messages a person can act on: a missing comma, a
/// trailing comma, a comment, single quotes or an unquoted word are each named as such.
struct JSONReader {
    private let bytes: [UInt8]
    private var i = 0
    private var line = 1
    private var lineStart = 0
    private var depth = 0
    private static let maxDepth = 200

    static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        var reader = JSONReader(bytes: Array(text.utf8))
        return try reader.document()
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3; lineStart = 3 }   // a byte order mark
    }

    /// The column at an earlier offset on the current line, so that a long line is counted once.
    private var counted = (offset: 0, column: 1)

    private var position: TextPosition {
        mutating get {
            if counted.offset < lineStart || counted.offset > i { counted = (lineStart, 1) }
            counted = (i, Self.column(bytes, from: counted.offset, to: i, startingAt: counted.column))
            return TextPosition(line: line, column: counted.column)
        }
    }

    private static func column(_ bytes: [UInt8], from: Int, to: Int, startingAt column: Int) -> Int {
        // UTF-8 continuation bytes (10xxxxxx) do not start a character.
        bytes[from..<min(to, bytes.count)].reduce(column) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
    }

    private mutating func fail(_ problem: String) -> JSONSyntaxError { JSONSyntaxError(at: position, problem: problem) }

    private var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func skipWhitespace() {
        while let c = peek {
            switch c {
            case UInt8(ascii: "\n"): i += 1; line += 1; lineStart = i
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"): i += 1
            default: return
            }
        }
    }

    private mutating func document() throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        if peek == nil { throw fail("the file is empty (a model file is a JSON object: {\"name\": …, \"layers\": […]})") }
        let v = try value(after: "the start of the file")
        skipWhitespace()
        if peek != nil { throw fail("unexpected \(describeHere()) after the end of the JSON value (a second top-level value, or an extra '}' or ']'?)") }
        return v
    }

    /// The character at the cursor, for messages.
    private func describeHere() -> String {
        guard let c = peek else { return "end of the file" }
        if c < 0x80 { return "'\(Character(Unicode.Scalar(c)))'" }
        var end = i + 1
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        return "'\(String(decoding: bytes[i..<end], as: UTF8.self))'"
    }

    private mutating func value(after context: String) throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        let at = position
        guard let c = peek else { throw fail("unexpected end of the file after \(context) (an unclosed '[' or '{'?)") }
        switch c {
        case UInt8(ascii: "{"): return JSONValue(kind: try object(), at: at)
        case UInt8(ascii: "["): return JSONValue(kind: try array(), at: at)
        case UInt8(ascii: "\""): return JSONValue(kind: .string(try string()), at: at)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return JSONValue(kind: .number(try number()), at: at)
        case UInt8(ascii: "'"): throw fail("strings need double quotes (\"), not single quotes")
        case UInt8(ascii: "/"): throw fail("JSON does not allow comments")
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "_"):
            let start = i
            while let d = peek, d.isWordCharacter { i += 1 }
            let word = String(decoding: bytes[start..<i], as: UTF8.self)
            switch word {
            case "true": return JSONValue(kind: .bool(true), at: at)
            case "false": return JSONValue(kind: .bool(false), at: at)
            case "null": return JSONValue(kind: .null, at: at)
            default:
                i = start
                throw fail("unquoted word '\(word)' (strings need double quotes: \"\(word)\")")
            }
        case UInt8(ascii: "+"), UInt8(ascii: "."): throw fail("invalid number: JSON numbers start with a digit or '-'")
        default: throw fail("expected a value (a number, a string, true, false, null, a list or an object) after \(context), got \(describeHere())")
        }
    }

    private mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        if depth > Self.maxDepth { throw fail("lists and objects are nested more than \(Self.maxDepth) deep") }
    }

    private mutating func object() throws(JSONSyntaxError) -> JSONValue.Kind {
        try enter()
        i += 1   // {
        var members: [JSONValue.Member] = []
        skipWhitespace()
        if peek == UInt8(ascii: "}") { i += 1; depth -= 1; return .object([]) }
        while true {
            skipWhitespace()
            let keyAt = position
            switch peek {
            case UInt8(ascii: "\""): break
            case UInt8(ascii: "}"): throw fail("a comma before '}' is not allowed in JSON (remove the trailing comma)")
            case UInt8(ascii: "'"): throw fail("keys need double quotes (\"), not single quotes")
            case UInt8(ascii: "/"): throw fail("JSON does not allow comments")
            case nil: throw fail("unexpected end of the file inside an object (a missing '}'?)")
            default: throw fail("expected a key in double quotes, got \(describeHere())")
            }
            let key = try string()
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else { throw fail("expected ':' after the key \(jsonQuoted(key)), got \(describeHere())") }
            i += 1
            let v = try value(after: "the key \(jsonQuoted(key))")
            members.append(JSONValue.Member(key: key, keyAt: keyAt, value: v))
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "}"): i += 1; depth -= 1; return .object(members)
            case UInt8(ascii: "\""): throw fail("expected ',' or '}' after the value of \(jsonQuoted(key)) (a missing comma?)")
            case nil: throw fail("unexpected end of the file inside an object (a missing '}'?)")
            default: throw fail("expected ',' or '}' after the value of \(jsonQuoted(key)), got \(describeHere())")
            }
        }
    }

    private mutating func array() throws(JSONSyntaxError) -> JSONValue.Kind {
        try enter()
        i += 1   // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") { i += 1; depth -= 1; return .array([]) }
        while true {
            skipWhitespace()
            if peek == UInt8(ascii: "]") { throw fail("a comma before ']' is not allowed in JSON (remove the trailing comma)") }
            elements.append(try value(after: elements.isEmpty ? "'['" : "','"))
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "]"): i += 1; depth -= 1; return .array(elements)
            case UInt8(ascii: "\""), UInt8(ascii: "{"), UInt8(ascii: "["):
                throw fail("expected ',' or ']' after a list element (a missing comma?)")
            case nil: throw fail("unexpected end of the file inside a list (a missing ']'?)")
            default: throw fail("expected ',' or ']' after a list element, got \(describeHere())")
            }
        }
    }

    private mutating func string() throws(JSONSyntaxError) -> String {
        i += 1   // "
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw fail("unexpected end of the file inside a string (a missing '\"'?)") }
            switch c {
            case UInt8(ascii: "\""):
                i += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                i += 1
                guard let e = peek else { throw fail("unexpected end of the file inside a string") }
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    i += 1
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar), bytes[i...].starts(with: Array("\\u".utf8)) {
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair in a \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape (an unpaired surrogate)") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                    continue
                default: throw fail("invalid escape '\\\(Character(Unicode.Scalar(e)))' in a string")
                }
                i += 1
            case 0..<0x20:
                throw fail(c == UInt8(ascii: "\n") ? "a line break inside a string (a missing '\"'?)" : "a control character inside a string (write it as an escape such as \\t)")
            default:
                out.append(c)
                i += 1
            }
        }
    }

    private mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = peek, let d = c.hexValue else { throw fail("a \\u escape needs four hex digits") }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, kept as written.
    private mutating func number() throws(JSONSyntaxError) -> String {
        let start = i
        while let c = peek, c.isDigit || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".")
                || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { i += 1 }
        let literal = Array(bytes[start..<i])
        let text = String(decoding: literal, as: UTF8.self)
        var j = 0
        func digits() -> Int { let s = j; while j < literal.count, literal[j].isDigit { j += 1 }; return j - s }
        var valid = true
        if j < literal.count, literal[j] == UInt8(ascii: "-") { j += 1 }
        let intDigits = digits()
        if intDigits == 0 || (intDigits > 1 && literal[j - intDigits] == UInt8(ascii: "0")) { valid = false }
        if valid, j < literal.count, literal[j] == UInt8(ascii: ".") { j += 1; if digits() == 0 { valid = false } }
        if valid, j < literal.count, literal[j] == UInt8(ascii: "e") || literal[j] == UInt8(ascii: "E") {
            j += 1
            if j < literal.count, literal[j] == UInt8(ascii: "+") || literal[j] == UInt8(ascii: "-") { j += 1 }
            if digits() == 0 { valid = false }
        }
        if !valid || j != literal.count {
            i = start
            throw fail("invalid number '\(text)'")
        }
        if let c = peek, c.isWordCharacter {
            throw fail("invalid number: '\(text)' followed by \(describeHere())")
        }
        return text
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where u.value < 0x20:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

private extension UInt8 {
    var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    var isWordCharacter: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "Z"))
            || self == UInt8(ascii: "_")
    }
    var hexValue: UInt32? {
        switch self {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(self - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(self - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(self - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}
