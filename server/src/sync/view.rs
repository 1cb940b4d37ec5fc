//! What one caller sees of a collection: the rows the read rules allow, narrowed by the
//! subscription's shape. The session builds every view from the rules
//! (`crate::session::access`); the operations here only apply it.

use weft_core::crdt::RecordState;
use weft_core::protocol::Shape;
use weft_core::value::Document;

use crate::auth::rules::Access;

/// A caller's view of one collection.
#[derive(Clone, Debug)]
pub struct View {
    access: Access,
    shape: Option<Shape>,
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
    /// The view that `access` (already decided by the rules) and `shape` make.
    pub fn new(access: Access, shape: Option<Shape>) -> View {
        View { access, shape }
    }

    /// Whether the read rules let the caller see `document` (the shape aside: reads
    /// that are not subscriptions have none).
    pub fn allows(&self, document: &Document) -> bool {
        self.access.allows(Some(document))
    }

    /// Whether the view is the whole collection: every row readable and no shape. Only
    /// then do merkle digests (which cover every row) describe what the caller holds.
    pub fn sees_every_row(&self) -> bool {
        self.access == Access::All && self.shape.is_none()
    }

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
