//! Category use cases: the tree, and its admin edits.

use std::collections::HashMap;

use kit::clock::now_millis;
use kit::db::Backend;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{CategoryDraft, NewCategory};
use crate::error::{CatalogError, Result};
use crate::storage::categories::{self, CategoryRecord, DeleteOutcome, WriteOutcome};

/// A category with everything below it.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryNode {
    pub category: CategoryRecord,
    pub children: Vec<CategoryNode>,
}

/// Arrange categories into trees: the roots, each with its descendants,
/// siblings in name order.
pub fn build_forest(all: Vec<CategoryRecord>) -> Vec<CategoryNode> {
    let mut by_parent: HashMap<Option<Uuid>, Vec<CategoryRecord>> = HashMap::new();
    for c in all {
        by_parent.entry(c.parent_id).or_default().push(c);
    }
    fn grow(
        parent: Option<Uuid>,
        by_parent: &mut HashMap<Option<Uuid>, Vec<CategoryRecord>>,
    ) -> Vec<CategoryNode> {
        let mut level = by_parent.remove(&parent).unwrap_or_default();
        level.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        level
            .into_iter()
            .map(|category| {
                let children = grow(Some(category.id), by_parent);
                CategoryNode { category, children }
            })
            .collect()
    }
    grow(None, &mut by_parent)
}

fn find(nodes: Vec<CategoryNode>, key: &str) -> Option<CategoryNode> {
    for node in nodes {
        if node.category.id.to_string() == key || node.category.slug == key {
            return Some(node);
        }
        if let Some(found) = find(node.children, key) {
            return Some(found);
        }
    }
    None
}

pub async fn tree(state: &AppState) -> Result<Vec<CategoryNode>> {
    Ok(build_forest(categories::all(state.db.pool()).await?))
}

/// One category (by id or slug) with its subtree.
pub async fn get(state: &AppState, key: &str) -> Result<CategoryNode> {
    find(tree(state).await?, key.trim()).ok_or(CatalogError::CategoryNotFound)
}

/// Serialise edits of the tree, so two concurrent moves cannot together
/// make a cycle that neither makes alone. SQLite's single writer already
/// does.
async fn lock_tree(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 AS held FROM (SELECT pg_advisory_xact_lock(5261170)) AS l")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn written(outcome: WriteOutcome) -> Result<()> {
    match outcome {
        WriteOutcome::Written => Ok(()),
        WriteOutcome::SlugTaken => Err(CatalogError::SlugTaken),
        WriteOutcome::ParentMissing => Err(CatalogError::field("parent_id", "no such category")),
    }
}

pub async fn create(state: &AppState, input: &NewCategory) -> Result<CategoryRecord> {
    let draft = CategoryDraft::parse(input)?;
    let now = now_millis();
    let category = CategoryRecord {
        id: Uuid::now_v7(),
        parent_id: draft.parent_id,
        name: draft.name,
        slug: draft.slug.as_str().to_string(),
        description: draft.description,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.begin().await?;
    lock_tree(&mut tx, state.db.backend()).await?;
    if let Some(parent) = category.parent_id
        && !categories::exists(&mut *tx, parent).await?
    {
        return Err(CatalogError::field("parent_id", "no such category"));
    }
    written(categories::insert(&mut *tx, &category).await?)?;
    tx.commit().await?;
    state.cache.invalidate_all().await;
    tracing::info!(category_id = %category.id, slug = %category.slug, "category created");
    Ok(category)
}

/// Replace a category's fields (PUT), possibly moving it in the tree.
pub async fn replace(state: &AppState, id: Uuid, input: &NewCategory) -> Result<CategoryRecord> {
    let draft = CategoryDraft::parse(input)?;
    let mut tx = state.db.begin().await?;
    lock_tree(&mut tx, state.db.backend()).await?;
    let Some(old) = categories::by_id(&mut *tx, id).await? else {
        return Err(CatalogError::CategoryNotFound);
    };
    if let Some(parent) = draft.parent_id {
        if parent == id {
            return Err(CatalogError::field(
                "parent_id",
                "a category cannot be its own parent",
            ));
        }
        if !categories::exists(&mut *tx, parent).await? {
            return Err(CatalogError::field("parent_id", "no such category"));
        }
        if categories::is_in_subtree(&mut tx, id, parent).await? {
            return Err(CatalogError::field(
                "parent_id",
                "is below this category; a category cannot be its own ancestor",
            ));
        }
    }
    let category = CategoryRecord {
        id,
        parent_id: draft.parent_id,
        name: draft.name,
        slug: draft.slug.as_str().to_string(),
        description: draft.description,
        created_at: old.created_at,
        updated_at: now_millis().max(old.updated_at),
    };
    match categories::update(&mut *tx, &category).await? {
        None => return Err(CatalogError::CategoryNotFound),
        Some(outcome) => written(outcome)?,
    }
    tx.commit().await?;
    state.cache.invalidate_all().await;
    tracing::info!(category_id = %id, "category updated");
    Ok(category)
}

/// Delete an empty category: one with products (listed or not) or
/// subcategories is refused.
pub async fn delete(state: &AppState, id: Uuid) -> Result<()> {
    let mut tx = state.db.begin().await?;
    lock_tree(&mut tx, state.db.backend()).await?;
    if categories::by_id(&mut *tx, id).await?.is_none() {
        return Err(CatalogError::CategoryNotFound);
    }
    let (children, products) = categories::usage(&mut tx, id).await?;
    if children > 0 || products > 0 {
        return Err(CatalogError::CategoryInUse {
            usage: Some((children, products)),
        });
    }
    match categories::delete(&mut tx, id).await? {
        DeleteOutcome::Deleted => {}
        DeleteOutcome::NotFound => return Err(CatalogError::CategoryNotFound),
        DeleteOutcome::InUse => {
            return Err(CatalogError::CategoryInUse { usage: None });
        }
    }
    tx.commit().await?;
    state.cache.invalidate_all().await;
    tracing::info!(category_id = %id, "category deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(name: &str, parent: Option<Uuid>) -> CategoryRecord {
        CategoryRecord {
            id: Uuid::now_v7(),
            parent_id: parent,
            name: name.into(),
            slug: name.to_lowercase(),
            description: String::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn forest_nests_children_in_name_order() {
        let root = cat("Electronics", None);
        let audio = cat("Audio", Some(root.id));
        let computers = cat("Computers", Some(root.id));
        let books = cat("Books", None);
        let forest = build_forest(vec![
            computers.clone(),
            root.clone(),
            audio.clone(),
            books.clone(),
        ]);
        assert_eq!(forest.len(), 2);
        assert_eq!(forest[0].category, books);
        assert_eq!(forest[1].category, root);
        let names: Vec<_> = forest[1]
            .children
            .iter()
            .map(|c| c.category.name.as_str())
            .collect();
        assert_eq!(names, ["Audio", "Computers"]);
        assert_eq!(find(forest, "audio").unwrap().category, audio);
    }
}
