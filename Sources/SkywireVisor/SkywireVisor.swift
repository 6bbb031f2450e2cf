// SkywireVisor
