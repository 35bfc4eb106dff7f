//! The device tree of the virt board, written with rust-vmm's `vm-fdt` the
//! way QEMU's `hw/riscv/virt.c` writes it: what Linux and OpenSBI read to
//! find the harts, memory, interrupt controllers, console and power control.

use vm_fdt::FdtWriter;

use super::layout::*;

#[derive(Debug, thiserror::Error)]
pub enum FdtError {
    #[error("cannot build the device tree: {0}")]
    Write(#[from] vm_fdt::Error),
}

/// What the device tree says about one hart.
#[derive(Debug, Clone)]
pub struct CpuNode {
    /// `riscv,isa`, e.g. "rv64imafdc_zicsr_zifencei".
    pub isa: String,
    /// `riscv,isa-extensions`, e.g. ["i", "m", "a", "f", "d", "c", "zicsr"].
    pub extensions: Vec<String>,
    /// `mmu-type`, e.g. "riscv,sv48".
    pub mmu_type: String,
}

/// Everything the board's device tree depends on.
#[derive(Debug, Clone)]
pub struct FdtConfig {
    pub cpus: Vec<CpuNode>,
    pub ram_size: u64,
    pub bootargs: String,
    pub initrd: Option<(u64, u64)>,
    /// Entropy for the kernel's `/chosen/rng-seed` (none: no property).
    pub rng_seed: Vec<u8>,
}

const PHANDLE_CPU: u32 = 0x10;
const PHANDLE_INTC: u32 = 0x20;
const PHANDLE_PLIC: u32 = 0x40;
const PHANDLE_TEST: u32 = 0x41;

/// Interrupt causes on the hart's local interrupt controller.
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_S_EXT: u32 = 9;
const IRQ_M_EXT: u32 = 11;

fn reg(fdt: &mut FdtWriter, base: u64, size: u64) -> Result<(), vm_fdt::Error> {
    fdt.property_array_u64("reg", &[base, size])
}

/// Write the device tree blob.
pub fn build(config: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "riscv-virtio")?;
    fdt.property_string("model", "riscv-virtio,qemu")?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &config.bootargs)?;
    fdt.property_string("stdout-path", &format!("/soc/serial@{UART_BASE:x}"))?;
    if let Some((start, end)) = config.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    if !config.rng_seed.is_empty() {
        fdt.property("rng-seed", &config.rng_seed)?;
    }
    fdt.end_node(chosen)?;

    let memory = fdt.begin_node(&format!("memory@{DRAM_BASE:x}"))?;
    fdt.property_string("device_type", "memory")?;
    reg(&mut fdt, DRAM_BASE, config.ram_size)?;
    fdt.end_node(memory)?;

    cpus(&mut fdt, &config.cpus)?;
    soc(&mut fdt, config.cpus.len() as u32)?;

    for (name, value) in [("poweroff", 0x5555u32), ("reboot", 0x7777)] {
        let node = fdt.begin_node(name)?;
        fdt.property_string("compatible", &format!("syscon-{name}"))?;
        fdt.property_u32("regmap", PHANDLE_TEST)?;
        fdt.property_u32("offset", 0)?;
        fdt.property_u32("value", value)?;
        fdt.end_node(node)?;
    }

    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

fn cpus(fdt: &mut FdtWriter, cpus: &[CpuNode]) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", TIMEBASE_HZ as u32)?;
    for (i, cpu) in cpus.iter().enumerate() {
        let i = i as u32;
        let c = fdt.begin_node(&format!("cpu@{i}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_u32("reg", i)?;
        fdt.property_string("status", "okay")?;
        fdt.property_string("compatible", "riscv")?;
        fdt.property_string("riscv,isa", &cpu.isa)?;
        fdt.property_string("riscv,isa-base", "rv64i")?;
        fdt.property_string_list("riscv,isa-extensions", cpu.extensions.clone())?;
        fdt.property_string("mmu-type", &cpu.mmu_type)?;
        fdt.property_phandle(PHANDLE_CPU + i)?;
        let intc = fdt.begin_node("interrupt-controller")?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_string("compatible", "riscv,cpu-intc")?;
        fdt.property_phandle(PHANDLE_INTC + i)?;
        fdt.end_node(intc)?;
        fdt.end_node(c)?;
    }
    let map = fdt.begin_node("cpu-map")?;
    let cluster = fdt.begin_node("cluster0")?;
    for i in 0..cpus.len() as u32 {
        let core = fdt.begin_node(&format!("core{i}"))?;
        fdt.property_u32("cpu", PHANDLE_CPU + i)?;
        fdt.end_node(core)?;
    }
    fdt.end_node(cluster)?;
    fdt.end_node(map)?;
    fdt.end_node(node)
}

fn soc(fdt: &mut FdtWriter, harts: u32) -> Result<(), vm_fdt::Error> {
    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;

    let node = fdt.begin_node(&format!("rtc@{RTC_BASE:x}"))?;
    fdt.property_string("compatible", "google,goldfish-rtc")?;
    reg(fdt, RTC_BASE, RTC_SIZE)?;
    fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
    fdt.property_u32("interrupts", RTC_IRQ)?;
    fdt.end_node(node)?;

    let node = fdt.begin_node(&format!("serial@{UART_BASE:x}"))?;
    fdt.property_string("compatible", "ns16550a")?;
    reg(fdt, UART_BASE, UART_SIZE)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
    fdt.property_u32("interrupts", UART_IRQ)?;
    fdt.end_node(node)?;

    let node = fdt.begin_node(&format!("test@{TEST_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        vec![
            "sifive,test1".into(),
            "sifive,test0".into(),
            "syscon".into(),
        ],
    )?;
    reg(fdt, TEST_BASE, TEST_SIZE)?;
    fdt.property_phandle(PHANDLE_TEST)?;
    fdt.end_node(node)?;

    // QEMU lists the slots from the highest address down; Linux numbers
    // virtio devices in device-tree order, so keep that order.
    for i in (0..VIRTIO_COUNT).rev() {
        let base = virtio_base(i);
        let node = fdt.begin_node(&format!("virtio_mmio@{base:x}"))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        reg(fdt, base, VIRTIO_SIZE)?;
        fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
        fdt.property_u32("interrupts", VIRTIO_IRQ + i as u32)?;
        fdt.end_node(node)?;
    }

    let node = fdt.begin_node(&format!("plic@{PLIC_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
    )?;
    reg(fdt, PLIC_BASE, PLIC_SIZE)?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("riscv,ndev", PLIC_NUM_SOURCES - 1)?;
    let ext: Vec<u32> = (0..harts)
        .flat_map(|i| [PHANDLE_INTC + i, IRQ_M_EXT, PHANDLE_INTC + i, IRQ_S_EXT])
        .collect();
    fdt.property_array_u32("interrupts-extended", &ext)?;
    fdt.property_phandle(PHANDLE_PLIC)?;
    fdt.end_node(node)?;

    let node = fdt.begin_node(&format!("clint@{CLINT_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,clint0".into(), "riscv,clint0".into()],
    )?;
    reg(fdt, CLINT_BASE, CLINT_SIZE)?;
    let ext: Vec<u32> = (0..harts)
        .flat_map(|i| [PHANDLE_INTC + i, IRQ_M_SOFT, PHANDLE_INTC + i, IRQ_M_TIMER])
        .collect();
    fdt.property_array_u32("interrupts-extended", &ext)?;
    fdt.end_node(node)?;

    fdt.end_node(soc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(harts: usize) -> FdtConfig {
        FdtConfig {
            cpus: (0..harts)
                .map(|_| CpuNode {
                    isa: "rv64imafdc_zicsr_zifencei".into(),
                    extensions: ["i", "m", "a", "f", "d", "c", "zicsr", "zifencei"]
                        .map(String::from)
                        .to_vec(),
                    mmu_type: "riscv,sv48".into(),
                })
                .collect(),
            ram_size: 512 << 20,
            bootargs: "console=ttyS0 quiet".into(),
            initrd: Some((0x9000_0000, 0x9100_0000)),
            rng_seed: vec![1; 32],
        }
    }

    fn u32s(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn chosen_memory_and_cpus() {
        let blob = build(&config(2)).unwrap();
        let dt = fdt::Fdt::new(&blob).unwrap();
        let chosen = dt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyS0 quiet"));
        assert_eq!(chosen.stdout().unwrap().name, "serial@10000000");
        let c = dt.find_node("/chosen").unwrap();
        let start = c.property("linux,initrd-start").unwrap().as_usize();
        let end = c.property("linux,initrd-end").unwrap().as_usize();
        assert_eq!((start, end), (Some(0x9000_0000), Some(0x9100_0000)));
        let region = dt.memory().regions().next().unwrap();
        assert_eq!(region.starting_address as u64, 0x8000_0000);
        assert_eq!(region.size, Some(512 << 20));

        let cpus: Vec<_> = dt.cpus().collect();
        assert_eq!(cpus.len(), 2);
        for (i, cpu) in cpus.iter().enumerate() {
            assert_eq!(cpu.ids().first(), i);
            assert_eq!(cpu.timebase_frequency(), 10_000_000);
            let isa = cpu.property("riscv,isa").unwrap().as_str();
            assert_eq!(isa, Some("rv64imafdc_zicsr_zifencei"));
            assert_eq!(
                cpu.property("mmu-type").unwrap().as_str(),
                Some("riscv,sv48")
            );
            assert_eq!(cpu.property("status").unwrap().as_str(), Some("okay"));
            let exts = cpu.property("riscv,isa-extensions").unwrap().value;
            assert!(exts.starts_with(b"i\0m\0a\0f\0d\0c\0zicsr\0"));
        }
        let intc = dt.find_node("/cpus/cpu@1/interrupt-controller").unwrap();
        assert_eq!(intc.compatible().unwrap().first(), "riscv,cpu-intc");
        assert!(dt.find_node("/cpus/cpu-map/cluster0/core1").is_some());
    }

    #[test]
    fn soc_devices_as_opensbi_and_linux_look_for_them() {
        let blob = build(&config(2)).unwrap();
        let dt = fdt::Fdt::new(&blob).unwrap();
        let compat = |path: &str| {
            dt.find_node(path)
                .unwrap_or_else(|| panic!("{path} missing"))
                .compatible()
                .unwrap()
                .all()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            compat("/soc/clint@2000000"),
            ["sifive,clint0", "riscv,clint0"]
        );
        assert_eq!(
            compat("/soc/plic@c000000"),
            ["sifive,plic-1.0.0", "riscv,plic0"]
        );
        assert_eq!(compat("/soc/serial@10000000"), ["ns16550a"]);
        assert_eq!(
            compat("/soc/test@100000"),
            ["sifive,test1", "sifive,test0", "syscon"]
        );
        assert_eq!(compat("/soc/rtc@101000"), ["google,goldfish-rtc"]);
        assert_eq!(compat("/poweroff"), ["syscon-poweroff"]);
        assert_eq!(compat("/reboot"), ["syscon-reboot"]);
        for i in 0..8 {
            let path = format!("/soc/virtio_mmio@{:x}", 0x1000_1000 + 0x1000 * i);
            assert_eq!(compat(&path), ["virtio,mmio"]);
            let irq = dt.find_node(&path).unwrap().property("interrupts").unwrap();
            assert_eq!(irq.as_usize(), Some(1 + i));
        }

        let plic = dt.find_node("/soc/plic@c000000").unwrap();
        assert_eq!(plic.property("riscv,ndev").unwrap().as_usize(), Some(96));
        let ext = u32s(plic.property("interrupts-extended").unwrap().value);
        assert_eq!(ext, [0x20, 11, 0x20, 9, 0x21, 11, 0x21, 9]);
        let clint = dt.find_node("/soc/clint@2000000").unwrap();
        let ext = u32s(clint.property("interrupts-extended").unwrap().value);
        assert_eq!(ext, [0x20, 3, 0x20, 7, 0x21, 3, 0x21, 7]);
        let reg = clint.reg().unwrap().next().unwrap();
        assert_eq!(
            (reg.starting_address as u64, reg.size),
            (0x200_0000, Some(0x1_0000))
        );

        let serial = dt.find_node("/soc/serial@10000000").unwrap();
        assert_eq!(serial.property("interrupts").unwrap().as_usize(), Some(10));
        assert_eq!(
            serial.property("clock-frequency").unwrap().as_usize(),
            Some(3_686_400)
        );
        let poweroff = dt.find_node("/poweroff").unwrap();
        assert_eq!(poweroff.property("value").unwrap().as_usize(), Some(0x5555));
        assert_eq!(poweroff.property("regmap").unwrap().as_usize(), Some(0x41));
        let test = dt.find_node("/soc/test@100000").unwrap();
        assert_eq!(test.property("phandle").unwrap().as_usize(), Some(0x41));
    }

    #[test]
    fn no_initrd_no_initrd_properties() {
        let mut c = config(1);
        c.initrd = None;
        c.rng_seed.clear();
        let blob = build(&c).unwrap();
        let dt = fdt::Fdt::new(&blob).unwrap();
        let chosen = dt.find_node("/chosen").unwrap();
        assert!(chosen.property("linux,initrd-start").is_none());
        assert!(chosen.property("rng-seed").is_none());
    }
}
