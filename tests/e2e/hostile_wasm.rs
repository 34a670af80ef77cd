//! Hostile WebAssembly, made at test time: code that tries to make the host allocate
//! far past a plugin's `memory_mb` — many linear memories each grown, or one huge
//! `table.grow` — as a core module (the sandbox's unit tests) or as a `parser-plugin`
//! component (the end-to-end tests). No toolchain can write these in Rust, so they are
//! encoded with wasm-encoder and wrapped with wit-component.
//!
//! Shared by `host/src/plugin/sandbox.rs`'s tests and the e2e tests (`#[path]`).

#![allow(dead_code)]

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection,
    GlobalSection, GlobalType, ImportSection, Instruction as I, MemArg, MemorySection, MemoryType,
    Module, RefType, TableSection, TableType, TypeSection, ValType,
};

/// What the hostile code tries.
#[derive(Debug, Clone, Copy)]
pub enum Attack {
    /// Declares `count` memories of two pages and grows each, 1 MiB at a time, by up
    /// to `mib_each` MiB (or until a growth is refused), writing every byte it grew (so
    /// the pages are really used).
    Memories { count: u32, mib_each: u32 },
    /// Grows table 0 by `elements` (null) elements in one `table.grow`.
    Table { elements: u32 },
}

/// Pages (64 KiB) per growth step: 1 MiB.
const STEP_PAGES: i32 = 16;

/// A core module exporting `attack: func() -> i32`, which tries `attack` and returns 1
/// when a growth was refused (`memory.grow` / `table.grow` gave -1), 0 when every
/// growth succeeded.
pub fn core_module(attack: Attack) -> Vec<u8> {
    encode(attack, false)
}

/// A `runnel:plugin/parser` component whose `create` succeeds and whose `parse` runs
/// the attack, then traps: with `unreachable` when a growth was refused (the sandbox
/// held), with an integer division by zero when every growth succeeded.
pub fn parser_component(attack: Attack) -> Vec<u8> {
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/runnel.wit");
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_file(&wit).expect("the plugin WIT parses");
    let world = resolve
        .select_world(&[package], Some("parser-plugin"))
        .expect("the parser world");
    let mut module = encode(attack, true);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .expect("a valid core module")
        .encode()
        .expect("the component encodes")
}

const PARSER: &str = "runnel:plugin/parser@0.2.0";

fn encode(attack: Attack, component: bool) -> Vec<u8> {
    let mut types = TypeSection::new();
    let i32s = |n: usize| vec![ValType::I32; n];
    types.ty().function([], [ValType::I32]); // 0: attack
    types.ty().function(i32s(1), i32s(1)); // 1: [resource-new]
    types.ty().function(i32s(4), i32s(1)); // 2: cabi_realloc
    types.ty().function(i32s(8), i32s(1)); // 3: create
    types.ty().function(i32s(5), i32s(1)); // 4: parse
    types.ty().function(i32s(1), []); // 5: dtor

    let mut imports = ImportSection::new();
    let mut imported = 0;
    if component {
        imports.import(
            &format!("[export]{PARSER}"),
            "[resource-new]instance",
            wasm_encoder::EntityType::Function(1),
        );
        imported = 1;
    }
    let resource_new = 0;
    let attack_fn = imported;

    let memories = match attack {
        Attack::Memories { count, .. } => count,
        Attack::Table { .. } => 1,
    };
    let mut memory = MemorySection::new();
    for _ in 0..memories {
        memory.memory(MemoryType {
            minimum: 2,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        minimum: 1,
        maximum: None,
        table64: false,
        shared: false,
    });
    // The bump allocator's next free byte (component only).
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(1024),
    );

    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut exports = ExportSection::new();
    functions.function(0);
    code.function(&attack_body(attack));
    if component {
        for (ty, name, body) in [
            (2, "cabi_realloc".to_owned(), realloc_body()),
            (
                3,
                format!("{PARSER}#[static]instance.create"),
                create_body(resource_new),
            ),
            (
                4,
                format!("{PARSER}#[method]instance.parse"),
                parse_body(attack_fn),
            ),
            (5, format!("{PARSER}#[dtor]instance"), {
                let mut f = Function::new([]);
                f.instruction(&I::End);
                f
            }),
        ] {
            let index = imported + functions.len();
            functions.function(ty);
            code.function(&body);
            exports.export(&name, ExportKind::Func, index);
        }
        exports.export("memory", ExportKind::Memory, 0);
    } else {
        exports.export("attack", ExportKind::Func, attack_fn);
    }

    let mut module = Module::new();
    module.section(&types);
    if component {
        module.section(&imports);
    }
    module
        .section(&functions)
        .section(&tables)
        .section(&memory)
        .section(&globals)
        .section(&exports)
        .section(&code);
    module.finish()
}

fn attack_body(attack: Attack) -> Function {
    // Locals: 0 refused, 1 pages grown in this memory, 2 the size before a growth.
    let mut f = Function::new([(3, ValType::I32)]);
    match attack {
        Attack::Memories { count, mib_each } => {
            for m in 0..count {
                f.instruction(&I::I32Const(0)).instruction(&I::LocalSet(1));
                f.instruction(&I::Block(BlockType::Empty));
                f.instruction(&I::Loop(BlockType::Empty));
                // Done with this memory once it grew `mib_each` MiB.
                f.instruction(&I::LocalGet(1))
                    .instruction(&I::I32Const(mib_each as i32 * STEP_PAGES))
                    .instruction(&I::I32GeU)
                    .instruction(&I::BrIf(1));
                f.instruction(&I::I32Const(STEP_PAGES))
                    .instruction(&I::MemoryGrow(m))
                    .instruction(&I::LocalTee(2))
                    .instruction(&I::I32Const(-1))
                    .instruction(&I::I32Eq)
                    .instruction(&I::If(BlockType::Empty))
                    // Refused: on to the next memory.
                    .instruction(&I::I32Const(1))
                    .instruction(&I::LocalSet(0))
                    .instruction(&I::Br(2))
                    .instruction(&I::End);
                // Write every byte grown: memory.fill(old_pages << 16, 1, 1 MiB).
                f.instruction(&I::LocalGet(2))
                    .instruction(&I::I32Const(16))
                    .instruction(&I::I32Shl)
                    .instruction(&I::I32Const(1))
                    .instruction(&I::I32Const(STEP_PAGES << 16))
                    .instruction(&I::MemoryFill(m));
                f.instruction(&I::LocalGet(1))
                    .instruction(&I::I32Const(STEP_PAGES))
                    .instruction(&I::I32Add)
                    .instruction(&I::LocalSet(1))
                    .instruction(&I::Br(0));
                f.instruction(&I::End).instruction(&I::End);
            }
            f.instruction(&I::LocalGet(0));
        }
        Attack::Table { elements } => {
            f.instruction(&I::RefNull(wasm_encoder::HeapType::FUNC))
                .instruction(&I::I32Const(elements as i32))
                .instruction(&I::TableGrow(0))
                .instruction(&I::I32Const(-1))
                .instruction(&I::I32Eq);
        }
    }
    f.instruction(&I::End);
    f
}

/// `cabi_realloc(old, old_size, align, size)`: a bump allocator in memory 0 that never
/// frees (the instance lives for one call).
fn realloc_body() -> Function {
    let mut f = Function::new([(1, ValType::I32)]);
    // start = (next + align - 1) & -align
    f.instruction(&I::GlobalGet(0))
        .instruction(&I::LocalGet(2))
        .instruction(&I::I32Add)
        .instruction(&I::I32Const(1))
        .instruction(&I::I32Sub)
        .instruction(&I::I32Const(0))
        .instruction(&I::LocalGet(2))
        .instruction(&I::I32Sub)
        .instruction(&I::I32And)
        .instruction(&I::LocalTee(4))
        .instruction(&I::LocalGet(3))
        .instruction(&I::I32Add)
        .instruction(&I::GlobalSet(0));
    // while next > memory.size << 16 { memory.grow 1 page, or trap }
    f.instruction(&I::Block(BlockType::Empty))
        .instruction(&I::Loop(BlockType::Empty))
        .instruction(&I::GlobalGet(0))
        .instruction(&I::MemorySize(0))
        .instruction(&I::I32Const(16))
        .instruction(&I::I32Shl)
        .instruction(&I::I32LeU)
        .instruction(&I::BrIf(1))
        .instruction(&I::I32Const(1))
        .instruction(&I::MemoryGrow(0))
        .instruction(&I::I32Const(-1))
        .instruction(&I::I32Eq)
        .instruction(&I::If(BlockType::Empty))
        .instruction(&I::Unreachable)
        .instruction(&I::End)
        .instruction(&I::Br(0))
        .instruction(&I::End)
        .instruction(&I::End);
    f.instruction(&I::LocalGet(4)).instruction(&I::End);
    f
}

/// `create`: `ok(instance)` — the result written at address 8 (discriminant) and 12
/// (the handle `[resource-new]` gives for rep 1).
fn create_body(resource_new: u32) -> Function {
    let mut f = Function::new([]);
    let mem = |align| MemArg {
        offset: 0,
        align,
        memory_index: 0,
    };
    f.instruction(&I::I32Const(8))
        .instruction(&I::I32Const(0))
        .instruction(&I::I32Store8(mem(0)))
        .instruction(&I::I32Const(12))
        .instruction(&I::I32Const(1))
        .instruction(&I::Call(resource_new))
        .instruction(&I::I32Store(mem(2)))
        .instruction(&I::I32Const(8))
        .instruction(&I::End);
    f
}

/// `parse`: the attack, then a trap that says whether a growth was refused.
fn parse_body(attack: u32) -> Function {
    let mut f = Function::new([]);
    f.instruction(&I::Call(attack))
        .instruction(&I::If(BlockType::Empty))
        .instruction(&I::Unreachable)
        .instruction(&I::End)
        .instruction(&I::I32Const(1))
        .instruction(&I::I32Const(0))
        .instruction(&I::I32DivU)
        .instruction(&I::End);
    f
}
