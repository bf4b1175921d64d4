//! Unit tests of the runtime's limits with components built here, where the
//! contract's plugins cannot reach: several memories and tables in one
//! call, and a start function that runs past the deadline.

use super::call::{PluginFault, classify, instantiate};
use super::sandbox::{Limits, Sandbox};
use super::{Runtime, RuntimeConfig};
use std::time::{Duration, Instant};
use wasm_encoder::{
    BlockType, CodeSection, Component, Function, FunctionSection, InstanceSection, Instruction,
    MemorySection, MemoryType, Module, ModuleArg, ModuleSection, RefType, StartSection,
    TableSection, TableType, TypeSection,
};

/// A component instantiating one core module per body, each with a memory
/// and a table (one memory per module, as the pool allows) and a start
/// function that runs its body.
fn component(bodies: &[&[Instruction<'_>]]) -> Vec<u8> {
    let mut c = Component::new();
    let mut instances = InstanceSection::new();
    for (i, body) in bodies.iter().enumerate() {
        c.section(&ModuleSection(&module(body)));
        instances.instantiate(i as u32, Vec::<(&str, ModuleArg)>::new());
    }
    c.section(&instances);
    c.finish()
}

fn module(body: &[Instruction<'_>]) -> Module {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: 0,
        maximum: None,
        shared: false,
    });
    m.section(&tables);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 0,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&memories);
    m.section(&StartSection { function_index: 0 });
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    for i in body {
        f.instruction(i);
    }
    f.instruction(&Instruction::End);
    code.function(&f);
    m.section(&code);
    m
}

/// Grows the module's memory by `pages`, trapping when refused.
fn grow_memory(pages: i32) -> Vec<Instruction<'static>> {
    vec![
        Instruction::I32Const(pages),
        Instruction::MemoryGrow(0),
        Instruction::I32Const(-1),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::Unreachable,
        Instruction::End,
    ]
}

/// Grows table 0 by `elements`, trapping when refused.
fn grow_table(elements: i32) -> Vec<Instruction<'static>> {
    vec![
        Instruction::RefNull(wasm_encoder::HeapType::FUNC),
        Instruction::I32Const(elements),
        Instruction::TableGrow(0),
        Instruction::I32Const(-1),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::Unreachable,
        Instruction::End,
    ]
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 2,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Instantiates `bytes` under `limits` as a call would, and names the fault.
async fn run(rt: &Runtime, bytes: Vec<u8>, limits: Limits) -> Result<(), PluginFault> {
    let component = wasmtime::component::Component::new(&rt.engine, bytes).unwrap();
    let pre = rt.linker.instantiate_pre(&component).unwrap();
    let sandbox = Sandbox {
        limits,
        ..Sandbox::default()
    };
    let mut slot = None;
    let deadline = Instant::now() + limits.deadline;
    match instantiate(rt, &pre, &sandbox, None, deadline, &mut slot).await {
        Ok(_) => Ok(()),
        Err(e) => Err(classify(e, slot.as_ref(), &sandbox)),
    }
}

const PAGE: usize = 64 << 10;

#[tokio::test]
async fn the_memory_limit_counts_all_memories_of_a_call_together() {
    let rt = runtime();
    let limits = Limits {
        memory_bytes: 100 * PAGE,
        ..Limits::default()
    };
    // Two core instances of 60 pages each: each memory is under the limit,
    // together they are not.
    let sixty = grow_memory(60);
    assert_eq!(
        run(&rt, component(&[&sixty, &sixty]), limits).await,
        Err(PluginFault::MemoryLimit(100 * PAGE))
    );
    // Control: 45 + 45 pages fit.
    let forty_five = grow_memory(45);
    assert_eq!(
        run(&rt, component(&[&forty_five, &forty_five]), limits).await,
        Ok(())
    );
}

#[tokio::test]
async fn the_memory_limit_counts_tables_too() {
    let rt = runtime();
    let limits = Limits {
        memory_bytes: 2 * PAGE,
        ..Limits::default()
    };
    // One page of memory and 15,000 table elements (120,000 bytes) do not
    // fit in two pages together.
    let both = [grow_memory(1), grow_table(15_000)].concat();
    assert_eq!(
        run(&rt, component(&[&both]), limits).await,
        Err(PluginFault::MemoryLimit(2 * PAGE))
    );
    // Control: the same page with 5,000 elements fits.
    let within = [grow_memory(1), grow_table(5_000)].concat();
    assert_eq!(run(&rt, component(&[&within]), limits).await, Ok(()));
}

#[tokio::test]
async fn a_deadline_passed_while_instantiating_is_a_deadline() {
    let rt = runtime();
    let limits = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    // A start function that never returns: the deadline passes during
    // instantiation.
    let spin = [
        Instruction::Loop(BlockType::Empty),
        Instruction::Br(0),
        Instruction::End,
    ];
    assert_eq!(
        run(&rt, component(&[&spin]), limits).await,
        Err(PluginFault::Deadline(Duration::from_millis(50)))
    );
    // Control: a start function that returns instantiates.
    assert_eq!(run(&rt, component(&[&[]]), limits).await, Ok(()));
}
