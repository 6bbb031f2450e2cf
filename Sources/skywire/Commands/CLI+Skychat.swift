import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import SkywireVisor

/// `skywire cli skychat ...`: messages between visors (docs/skychat.md).
struct SkychatGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skychat",
        abstract: "Direct and group messages to other visors (the skychat app, port 1).",
        discussion: "Closed by default: messages from keys not on the app's --whitelist or added with 'skychat allow' are dropped unread.",
        subcommands: [Send.self, List.self, Show.self, Groups.self, Allow.self, Disallow.self, Block.self, Unblock.self, Access.self]
    )

    struct Send: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send TEXT to a visor key or a group (g + 16 hex, from 'skychat group ls').",
            discussion: "Waits up to --wait seconds for the acknowledgement: prints 'delivered', or 'queued' when the peer did not answer yet (the visor keeps retrying with backoff). Exit status 0 both ways; a full queue or a bad key is an error.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The peer's public key (64 hex) or a group id.") var to: String
        @Argument(help: "The message (UTF-8, at most 4096 bytes).") var text: String
        @Option(help: "Seconds (0-60) to wait for the acknowledgement.") var wait: Int = 5
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                var client = try control.client()
                client.timeout = max(client.timeout, wait + 5)
                let row = try client.call("skychat.send", ["to": .string(to), "text": .string(text), "wait": .int(Int64(wait))])
                if json { try Output.json(row); return }
                let id = row["id"]?.stringValue ?? "?"
                if row["state"]?.stringValue == "delivered" {
                    print("delivered to \(to) (message \(id))")
                } else {
                    let pending = row["pending"]?.intValue ?? 0, total = row["recipients"]?.intValue ?? 0
                    print("queued for \(to) (message \(id), \(pending) of \(total) recipients not reached yet; retrying in the background)")
                    if let e = row["last_error"]?.stringValue { print("last error: \(e)") }
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Conversations, most recent first, with unread counts.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let rows = try control.client().call("skychat.ls")
                if json { try Output.json(rows); return }
                Output.table(["ID", "KIND", "NAME", "UNREAD", "MESSAGES", "QUEUED", "LAST"], (rows.arrayValue ?? []).map { r in
                    [r["id"]?.stringValue ?? "", r["kind"]?.stringValue ?? "", ChatText.line(r["name"]?.stringValue ?? "-"),
                     "\(r["unread"]?.intValue ?? 0)", "\(r["messages"]?.intValue ?? 0)", "\(r["queued"]?.intValue ?? 0)",
                     ChatText.line(r["last_text"]?.stringValue ?? "")]
                })
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A conversation's messages (marks them read).")
        @OptionGroup var control: ControlOptions
        @Argument(help: "A peer's public key or a group id.") var id: String
        @Option(help: "The last N messages.") var limit: Int = 200
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let row = try control.client().call("skychat.show", ["id": .string(id), "limit": .int(Int64(limit))])
                if json { try Output.json(row); return }
                for m in row["messages"]?.arrayValue ?? [] {
                    let from = m["outgoing"]?.boolValue == true ? "me" : String((m["from"]?.stringValue ?? "?").prefix(16))
                    let state = m["state"]?.stringValue == "queued" ? " [queued]" : ""
                    print("\(ChatText.time(m["time_ms"]?.intValue ?? 0))  \(from)  \(ChatText.line(m["text"]?.stringValue ?? ""))\(state)")
                }
            }
        }
    }

    /// `skychat group ...`.
    struct Groups: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "group", abstract: "Groups: a name and member keys (at most 32); a group message goes to each member.",
            subcommands: [GroupCreate.self, GroupAdd.self, GroupList.self])
    }

    struct GroupCreate: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a group; prints its id.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The group's name (at most 64 bytes).") var name: String
        @Option(help: "Comma-separated member keys.") var members: String = ""
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let row = try control.client().call("skychat.group.create", ["name": .string(name), "members": .string(members)])
                if json { try Output.json(row); return }
                print("\(row["id"]?.stringValue ?? "?")  \(name)  \((row["members"]?.arrayValue ?? []).count) members")
            }
        }
    }

    struct GroupAdd: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a member to a group.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The group id (g + 16 hex).") var group: String
        @Argument(help: "The member's public key.") var pk: String

        func run() throws {
            try runControl { _ = try control.client().call("skychat.group.add", ["group": .string(group), "pk": .string(pk)]) }
        }
    }

    struct GroupList: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Groups and their members.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let rows = try control.client().call("skychat.group.ls")
                if json { try Output.json(rows); return }
                Output.table(["ID", "NAME", "MEMBERS", "CREATED HERE"], (rows.arrayValue ?? []).map { r in
                    [r["id"]?.stringValue ?? "", ChatText.line(r["name"]?.stringValue ?? ""), "\((r["members"]?.arrayValue ?? []).count)",
                     r["created_here"]?.boolValue == true ? "yes" : "no"]
                })
            }
        }
    }

    /// One key on or off the allow or block list (`method`).
    static func listed(_ control: ControlOptions, _ method: String, _ pk: String) throws {
        try runControl {
            let row = try control.client().call(method, ["pk": .string(pk)])
            print("access \(row["access"]?.stringValue ?? "?"): \((row["allowed"]?.arrayValue ?? []).count) allowed, \((row["blocked"]?.arrayValue ?? []).count) blocked")
        }
    }

    struct Allow: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Admit messages from a key (besides the app's --whitelist).")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The visor's public key.") var pk: String
        func run() throws { try SkychatGroup.listed(control, "skychat.allow", pk) }
    }

    struct Disallow: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a key off the allow list ('skychat allow').")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The visor's public key.") var pk: String
        func run() throws { try SkychatGroup.listed(control, "skychat.disallow", pk) }
    }

    struct Block: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Drop every message from a key, whatever the whitelist says.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The visor's public key.") var pk: String
        func run() throws { try SkychatGroup.listed(control, "skychat.block", pk) }
    }

    struct Unblock: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a key off the block list.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The visor's public key.") var pk: String
        func run() throws { try SkychatGroup.listed(control, "skychat.unblock", pk) }
    }

    struct Access: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Whom skychat admits: the whitelist, the allow and block lists.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let row = try control.client().call("skychat.access")
                if json { try Output.json(row); return }
                let wl = row["whitelist"]?.stringValue ?? (row["whitelist"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ",")
                print("access: \(row["access"]?.stringValue ?? "?")")
                print("whitelist (config): \(wl.isEmpty ? "-" : wl)")
                for (name, key) in [("allowed", "allowed"), ("blocked", "blocked")] {
                    let keys = (row[key]?.arrayValue ?? []).compactMap(\.stringValue)
                    print("\(name): \(keys.isEmpty ? "-" : keys.joined(separator: ","))")
                }
            }
        }
    }
}

/// A peer's text made safe for a terminal: control characters (a peer's escape sequences) as spaces.
enum ChatText {
    static func line(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { s in
            s.value < 0x20 || (0x7f...0x9f).contains(s.value) ? " " : s
        }))
    }

    /// `YYYY-MM-DD HH:MM` UTC (gmtime_r(3)).
    static func time(_ millis: Int64) -> String {
        var t = time_t(millis / 1000)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min))"
    }
}
