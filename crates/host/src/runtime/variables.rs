//! `spin:variables/variables@3.0.0`: a component reads the variables of
//! its own `[component.NAME.variables]` table, resolved at start-up
//! (see [`crate::variables`]).

use wasmtime::component::{Accessor, HasData, Linker};

use super::InstanceState;
use crate::variables::{ComponentVariables, GetError};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/spin-variables@3.0.0",
        interfaces: "import spin:variables/variables@3.0.0;",
    });
}

use bindings::spin::variables::variables::{self, Error};

/// Marks where the interface finds its data in the store.
struct Variables;

impl HasData for Variables {
    type Data<'a> = &'a ComponentVariables;
}

impl<T> variables::HostWithStore<T> for Variables {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> Result<String, Error> {
        accessor.with(|mut access| {
            access.get().get(&name).map_err(|error| match error {
                GetError::InvalidName(message) => Error::InvalidName(message),
                GetError::Undefined(message) => Error::Undefined(message),
            })
        })
    }
}

impl variables::Host for &ComponentVariables {}

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    variables::add_to_linker::<_, Variables>(linker, |state| &*state.variables)
}
