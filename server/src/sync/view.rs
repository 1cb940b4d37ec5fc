//! What one caller sees of a collection: the rows the read rules allow, narrowed by the
//! subscription's shape.

use weft_core::crdt::RecordState;
use weft_core::protocol::Shape;

use crate::auth::rules::Access;

/// A caller's view of one collection.
#[derive(Clone, Debug)]
pub struct View {
    /// What the read rules allow.
    pub access: Access,
    /// The subscription's shape, if any.
    pub shape: Option<Shape>,
}

/// Where a record stands relative to a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// In the view: send it.
    Inside,
    /// Readable but outside the shape: the caller may be told it left.
    OutsideShape,
    /// Not readable: never mention it.
    Hidden,
}

impl View {
    /// Where `state` stands. Deleted records are judged by their last fields, so the
    /// deletion reaches exactly those who could see the record.
    pub fn classify(&self, state: &RecordState) -> Visibility {
        let document = state.document().unwrap_or_else(|| state.last_document());
        if !self.access.allows(Some(&document)) {
            return Visibility::Hidden;
        }
        match &self.shape {
            Some(shape) if !shape.matches(&document) => Visibility::OutsideShape,
            _ => Visibility::Inside,
        }
    }
}
