// The migrations are embedded at compile time (refinery's `embed_migrations!`): rebuild when
// a migration file is added or changed, or the binary would carry the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
