variable "gitlab_url" {
  description = "The issuer of the ID tokens: your instance's URL (CI_SERVER_URL) or its custom issuer URL. https:// and no trailing slash."
  type        = string
  default     = "https://gitlab.com"

  validation {
    condition     = can(regex("^https://[^/?#\\s\"\\\\]+(/[^/?#\\s\"\\\\]+)*$", var.gitlab_url))
    error_message = "gitlab_url must start with https:// and must not end with a slash."
  }
}

variable "audience" {
  description = "The aud: under id_tokens: in .gitlab-ci.yml. null means the same as gitlab_url."
  type        = string
  default     = null
}

variable "existing_provider_arn" {
  description = "An account holds one IAM OIDC provider per URL: null creates it, or give the ARN of the existing one."
  type        = string
  default     = null
}

variable "project_paths" {
  description = "Projects allowed to assume the role (mygroup/myproject), or every project under a group (mygroup/*). The top-level group must be spelled out."
  type        = list(string)

  validation {
    condition = length(var.project_paths) > 0 && alltrue([
      for path in var.project_paths : can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.*?/-]+$", path))
    ])
    error_message = "Each project path must be group/project or group/*, with a literal top-level group."
  }
}

variable "ref_type" {
  description = "Whether jobs must run on a branch or a tag; * for either."
  type        = string
  default     = "branch"

  validation {
    condition     = contains(["branch", "tag", "*"], var.ref_type)
    error_message = "ref_type must be branch, tag or *."
  }
}

variable "ref" {
  description = "The branch or tag name, or a pattern such as release/* or * (any). AWS cannot see whether a ref is protected: name refs that are protected in GitLab."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[^\\s\":\\\\]+$", var.ref))
    error_message = "ref must not contain spaces, colons, quotes or backslashes."
  }
}

variable "role_name" {
  description = "The IAM role's name."
  type        = string
}

variable "managed_policy_arns" {
  description = "ARNs of the managed policies that give the role its permissions."
  type        = list(string)
  default     = []
}

variable "max_session_duration" {
  description = "The longest session, in seconds, a job may ask for (3600 to 43200)."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be between 3600 and 43200."
  }
}
