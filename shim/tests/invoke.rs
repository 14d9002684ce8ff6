//! End-to-end: calling exported functions through `ctr run … IMAGE id /file.wasm#func ARGS…`,
//! the seed's six text-format examples, and the seed's C and Go `Add` / `AddUser`.

mod common;

use common::{Run, containerd, unique_id};

/// Runs `args` (entry point first) in `image` with the wasmbox runtime; checks nothing leaked.
fn run(image: &str, args: &[&str]) -> Run {
    let c = containerd();
    let id = unique_id("invoke");
    let run = c.run_wasm(image, &id, &[], args);
    c.assert_no_leftovers(&id);
    run
}

fn assert_prints(run: &Run, stdout: &str) {
    assert_eq!((run.code, run.stdout.as_str()), (0, stdout), "{run:#?}");
}

/// One line of cause on stderr and exit 126 (invalid input), containing every needle.
fn assert_refused(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, 126, "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line of cause: {run:#?}");
    for needle in needles {
        assert!(run.stderr.contains(needle), "{needle:?} missing: {run:#?}");
    }
}

#[test]
fn seed_add_with_the_images_default_args() {
    assert_prints(&run("seed", &[]), "33\n");
    assert_prints(&run("seed", &["/seed/add.wat#add", "-5", "2"]), "-3\n");
}

#[test]
fn seed_get_answer_plus_1() {
    assert_prints(&run("seed", &["/seed/call.wat#getAnswerPlus1"]), "43\n");
}

#[test]
fn seed_log_it_prints_through_console_log() {
    assert_prints(&run("seed", &["/seed/logit.wat#logIt"]), "13\n");
}

#[test]
fn seed_global_state_is_kept_between_calls_in_one_instance() {
    assert_prints(&run("seed", &["/seed/global.wat#getGlobal,incGlobal,incGlobal,getGlobal"]), "0\n2\n");
}

#[test]
fn seed_write_hi_reads_the_imported_memory() {
    assert_prints(&run("seed", &["/seed/writehi.wat#writeHi"]), "Hi\n");
}

#[test]
fn seed_call_by_index_and_out_of_range_trap() {
    assert_prints(&run("seed", &["/seed/table.wat#callByIndex", "0"]), "42\n");
    assert_prints(&run("seed", &["/seed/table.wat#callByIndex", "1"]), "13\n");
    let trap = run("seed", &["/seed/table.wat#callByIndex", "2"]);
    assert_eq!(trap.code, 134, "{trap:#?}");
    let first = trap.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("wasmbox: /seed/table.wat: wasm trap: "), "{trap:#?}");
    assert!(first.contains("undefined element") || first.contains("out of bounds"), "{trap:#?}");
}

#[test]
fn several_functions_take_their_args_in_order() {
    assert_prints(&run("seed", &["/seed/add.wat#add,add", "1", "2", "30", "12"]), "3\n42\n");
}

#[test]
fn wrong_arity_names_the_signature() {
    assert_refused(&run("seed", &["/seed/add.wat#add", "6"]), &["`add(i32, i32) -> (i32)` takes 2 argument(s)"]);
    assert_refused(&run("seed", &["/seed/add.wat#add", "6", "27", "1"]), &["1 argument(s) left over", "\"1\""]);
}

#[test]
fn unparsable_number_names_the_signature() {
    assert_refused(
        &run("seed", &["/seed/add.wat#add", "6", "twenty"]),
        &["argument 2 of `add(i32, i32) -> (i32)`: cannot read \"twenty\" as i32"],
    );
    assert_refused(&run("seed", &["/seed/add.wat#add", "6", "99999999999"]), &["cannot read \"99999999999\" as i32"]);
}

#[test]
fn missing_export_is_named() {
    assert_refused(
        &run("seed", &["/seed/add.wat#sub", "1", "2"]),
        &["no exported function `sub` (exported functions: add)"],
    );
}

#[test]
fn unknown_import_still_fails_next_to_the_js_imports() {
    let run = run("probe", &["/fixtures/missing-import.wat#_start"]);
    assert_refused(&run, &["env::no_such_function"]);
}

#[test]
fn c_seed_main_and_exports() {
    assert_prints(&run("c-seed", &[]), "hello, world!\n");
    assert_prints(&run("c-seed", &["/lib.wasm#Add", "6", "27"]), "33\n");
    assert_prints(&run("c-seed", &["/lib.wasm#AddUser", "str:Alice", "30"]), "name:Alice, len:5, age:30\n1\n");
}

#[test]
fn go_seed_main_and_exports() {
    assert_prints(&run("go-seed", &[]), "Hello, WebAssembly!\n");
    assert_prints(&run("go-seed", &["/lib.wasm#Add", "6", "27"]), "33\n");
    assert_prints(&run("go-seed", &["/lib.wasm#AddUser", "str:Alice", "30"]), "Add User:{Alice 30}\n1\n");
}

#[test]
fn string_argument_needs_a_ptr_len_pair() {
    assert_refused(
        &run("c-seed", &["/lib.wasm#AddUser", "str:Alice", "str:Bob"]),
        &["argument 3 of `AddUser(i32, i32, i32) -> (i32)`: \"str:Bob\" is a string, but parameters 3 and 4 are not"],
    );
    let run = run("seed", &["/seed/add.wat#add", "str:x"]);
    assert_refused(&run, &["the module exports no allocator"]);
}

#[test]
fn component_functions_take_and_print_wave_values() {
    assert_prints(&run("seed", &["/calc.wat#add", "6", "27"]), "33\n");
    assert_prints(&run("seed", &["/calc.wat#echo", "\"Alice\""]), "\"Alice\"\n");
    assert_prints(&run("seed", &["/calc.wat#add,echo", "1", "2", "\"x y\""]), "3\n\"x y\"\n");
    assert_refused(&run("seed", &["/calc.wat#add", "1", "-2"]), &["argument 2 (`b`) of `add(a: u32, b: u32)`", "WAVE"]);
    assert_refused(&run("seed", &["/calc.wat#nope"]), &["the component exports no function `nope`"]);
}

#[test]
fn imported_table_is_provided_with_the_declared_type() {
    assert_prints(&run("probe", &["/fixtures/imported-table.wat#callByIndex", "1"]), "13\n");
    assert_prints(&run("probe", &["/fixtures/imported-table.wat#callByIndex,callByIndex", "0", "1"]), "42\n13\n");
}
