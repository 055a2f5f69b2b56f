use kit::FieldError;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::slug::Slug;

/// What an admin sends to create or (fully) replace a category.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Unique; lower-case words joined by dashes.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^\\s*[a-z0-9]+(-[a-z0-9]+)*\\s*$",
        example = "kitchen-tools"
    )]
    pub slug: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// The parent category; absent or null for a top-level one.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub parent_id: Option<String>,
}

/// A category as the rules allow it. Whether the parent exists, and that it
/// is not the category itself or one of its descendants, is checked
/// against the stored tree.
#[derive(Debug, Clone)]
pub struct CategoryDraft {
    pub name: String,
    pub slug: Slug,
    pub description: String,
    pub parent_id: Option<Uuid>,
}

impl CategoryDraft {
    pub fn parse(input: &NewCategory) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(FieldError::new("name", "must be 1 to 100 characters"));
        }
        let slug = Slug::parse(&input.slug).map_err(|m| errors.push(FieldError::new("slug", m)));
        let description = input.description.trim();
        if description.chars().count() > 2000 {
            errors.push(FieldError::new(
                "description",
                "must be at most 2000 characters",
            ));
        }
        let parent_id = match input.parent_id.as_deref().map(str::trim) {
            None => Ok(None),
            Some(raw) => Uuid::parse_str(raw).map(Some).map_err(|_| {
                errors.push(FieldError::new("parent_id", "must be a category id"));
            }),
        };
        match (slug, parent_id) {
            (Ok(slug), Ok(parent_id)) if errors.is_empty() => Ok(CategoryDraft {
                name: name.to_string(),
                slug,
                description: description.to_string(),
                parent_id,
            }),
            _ => Err(errors),
        }
    }
}
