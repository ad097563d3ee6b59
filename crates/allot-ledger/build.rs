// The store embeds its migrations at compile time (`sqlx::migrate!`): rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
