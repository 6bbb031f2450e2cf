// Replaced below by the relay server's command line.
@main struct DmsgMain { static func main() {} }
