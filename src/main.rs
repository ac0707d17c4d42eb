fn main() {
    tandem::failpoint::init_from_env();
}
