//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds `migrations/` at
//! compile time, and Cargo reruns a macro only when a file it knows changes, so a new
//! migration file alone left the binary migrating to the schema of the last build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
