// SkywireConfig
