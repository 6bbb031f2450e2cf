import ArgumentParser
import SkywireConfig
import SkywireSystem
import SkywireVisor
#if canImport(Glibc)
import Glibc
#endif

/// `skywire cli url` / `ui` and `vpn url` / `vpn ui` (docs/ui.md): a login link to the visor's
/// web UI with a fresh one-time token, printed or opened in the desktop's browser.
enum UILink {
    /// The UI page a link opens: the whole UI (overview) or the VPN page.
    enum Page: String { case overview, vpn }

    /// Asks the visor (control method `ui.token`, root only) for a token; the link carries it in
    /// the fragment, which browsers never send to a server or put in a Referer.
    static func url(_ control: ControlOptions, page: Page) throws -> String {
        let answer = try control.client().call("ui.token")
        guard let base = answer["url"]?.stringValue, let token = answer["token"]?.stringValue else {
            throw ControlError(.failed, "the visor's answer to ui.token has no url or token")
        }
        return "\(base)#/login?token=\(token)&next=\(page.rawValue)"
    }

    /// xdg-open where a desktop exists (DISPLAY or WAYLAND_DISPLAY set and xdg-open installed),
    /// else print. The link is always printed too (it works once, for 10 minutes).
    static func open(_ control: ControlOptions, page: Page) throws {
        let link = try url(control, page: page)
        let desktop = ["DISPLAY", "WAYLAND_DISPLAY"].contains { (name: String) -> Bool in
            guard let value = getenv(name) else { return false }
            return value.pointee != 0
        }
        if desktop, let opener = Subprocess.findExecutable("xdg-open") {
            do {
                try Subprocess.launchDetached(opener, [link])
                print("opened the web UI in the browser; if nothing appears, open this link (valid once, for 10 minutes):")
            } catch {
                print("could not start xdg-open (\(error)); open this link (valid once, for 10 minutes):")
            }
        }
        print(link)
    }
}

extension CLICommand {
    struct URL: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "url",
            abstract: "Print a login link to the visor's web UI (a one-time token, valid 10 minutes).")
        @OptionGroup var control: ControlOptions
        func run() throws { try runControl { print(try UILink.url(control, page: .overview)) } }
    }

    struct UI: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ui",
            abstract: "Open the visor's web UI (xdg-open on a desktop, else print the login link); set its password.",
            subcommands: [Open.self, Password.self],
            defaultSubcommand: Open.self)

        struct Open: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Open the web UI with a one-time login link (printed when there is no desktop).")
            @OptionGroup var control: ControlOptions
            func run() throws { try runControl { try UILink.open(control, page: .overview) } }
        }

        struct Password: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Set the web UI's password, read from stdin (first line); stored as an Argon2id hash.",
                discussion: "There is no default password: without one, log in with `skywire cli url`. Setting a password ends every open UI session.")
            @OptionGroup var control: ControlOptions

            func run() throws {
                try runControl {
                    guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                        throw ControlError(.badRequest, "no password on stdin (e.g. `skywire cli ui password < file`)")
                    }
                    let answer = try control.client().call("ui.password", ["password": .string(line)])
                    print("UI password set (hash in \(answer["stored"]?.stringValue ?? "the state directory"))")
                }
            }
        }
    }
}

extension VPNGroup {
    struct URL: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "url", abstract: "Print a login link to the web UI's VPN page (one-time token, valid 10 minutes).")
        @OptionGroup var control: ControlOptions
        func run() throws { try runControl { print(try UILink.url(control, page: .vpn)) } }
    }

    struct UI: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ui", abstract: "Open the web UI's VPN page (xdg-open on a desktop, else print the login link).")
        @OptionGroup var control: ControlOptions
        func run() throws { try runControl { try UILink.open(control, page: .vpn) } }
    }
}
