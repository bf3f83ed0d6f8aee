package mysql

// ForceVersion makes b take its server for one of version v, whatever it
// reads (tests of the MySQL statements on MariaDB).
func ForceVersion(b *Backend, v string) {
	b.forceVersion = v
	b.setVersion(v, false)
}
