/// Named counters (`nft list counters table FAMILY NAME`).
extension NFTables {
    /// The text listing of a table's named counters, or nil when the table does not exist.
    public static func listCounters(family: String, table: String) throws -> String? {
        let r = try Subprocess.run(try binary(), ["list", "counters", "table", family, table])
        return r.status == 0 ? r.output : nil
    }
}
